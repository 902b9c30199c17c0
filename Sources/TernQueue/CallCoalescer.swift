import NIOConcurrencyHelpers

/// Turns concurrent calls into batches: while one batch is being sent, later calls wait and go
/// together in the next one (group commit). A call that finds nothing in flight is sent at once,
/// so batching costs no latency when the load is light, and saves a round trip and a script
/// run per call when it is heavy. The sender is a task of its own, not a caller's: a caller
/// cancelled while its call is in flight still gets the call's outcome (an enqueue that
/// happened must not look failed), never a `CancellationError` in its place.
final class CallCoalescer<Item: Sendable, Output: Sendable>: Sendable {
    private let maximumBatch: Int
    private let send: @Sendable ([Item]) async throws -> [Output]

    private struct State {
        var waiting: [(item: Item, continuation: CheckedContinuation<Output, any Error>)] = []
        var sending = false
    }
    private let state = NIOLockedValueBox(State())

    /// `send` must return one output per item, in order.
    init(maximumBatch: Int = 128, send: @escaping @Sendable ([Item]) async throws -> [Output]) {
        self.maximumBatch = maximumBatch
        self.send = send
    }

    func call(_ item: Item) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let startSending = state.withLockedValue { state -> Bool in
                state.waiting.append((item, continuation))
                guard !state.sending else { return false }
                state.sending = true
                return true
            }
            // Unstructured: the sender serves every caller that arrives while it runs, so it
            // belongs to none of them; it ends when nobody is waiting.
            if startSending { Task { await self.sendUntilDrained() } }
        }
    }

    /// Calls waiting for the next batch.
    var waitingCount: Int { state.withLockedValue { $0.waiting.count } }

    private func sendUntilDrained() async {
        while true {
            let batch = state.withLockedValue { state -> [(item: Item, continuation: CheckedContinuation<Output, any Error>)] in
                let batch = Array(state.waiting.prefix(maximumBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.sending = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let outputs = try await send(batch.map(\.item))
                guard outputs.count == batch.count else { throw JobQueueError(.invalidState, "a batch came back with \(outputs.count) of \(batch.count) answers") }
                for (waiter, output) in zip(batch, outputs) { waiter.continuation.resume(returning: output) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
