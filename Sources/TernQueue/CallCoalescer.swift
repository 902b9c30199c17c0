import NIOConcurrencyHelpers

/// Turns concurrent calls into batches: while one batch is being sent, later calls wait and go
/// together in the next one (group commit). A call that finds nothing in flight is sent at once
/// by its caller's task, so batching costs no latency (not even a hop to another task) when the
/// load is light, and saves a round trip and a script run per call when it is heavy; the calls
/// that wait go from a task of their own.
///
/// `send` must answer whether or not the task it runs in is cancelled (for Redis:
/// `waitingThroughCancellation`): a caller cancelled while its call is in flight still gets the
/// call's outcome (an enqueue that happened must not look failed), never a `CancellationError`
/// in its place.
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
        let sendsAlone = state.withLockedValue { state in
            defer { state.sending = true }
            return !state.sending
        }
        guard sendsAlone else {
            return try await withCheckedThrowingContinuation { continuation in
                let startSending = state.withLockedValue { state -> Bool in
                    state.waiting.append((item, continuation))
                    defer { state.sending = true }
                    return !state.sending
                }
                if startSending { sendInBackground() }
            }
        }
        let outputs: Result<[Output], any Error>
        do {
            outputs = .success(try await sendChecked([item]))
        } catch {
            outputs = .failure(error)
        }
        // Calls that came meanwhile go in the next batch.
        let othersWait = state.withLockedValue { state in
            state.sending = !state.waiting.isEmpty
            return state.sending
        }
        if othersWait { sendInBackground() }
        return try outputs.get()[0]
    }

    /// Calls waiting for the next batch.
    var waitingCount: Int { state.withLockedValue { $0.waiting.count } }

    /// Unstructured: the sender serves every caller that arrives while it runs, so it belongs to
    /// none of them; it ends when nobody is waiting.
    private func sendInBackground() {
        Task { await self.sendUntilDrained() }
    }

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
                let outputs = try await sendChecked(batch.map(\.item))
                for (waiter, output) in zip(batch, outputs) { waiter.continuation.resume(returning: output) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }

    /// Sends `items` as one batch; its answers, one per item, or an error.
    private func sendChecked(_ items: [Item]) async throws -> [Output] {
        let outputs = try await send(items)
        guard outputs.count == items.count else { throw JobQueueError(.invalidState, "a batch came back with \(outputs.count) of \(items.count) answers") }
        return outputs
    }
}
