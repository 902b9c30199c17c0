import NIOConcurrencyHelpers
import Testing
@testable import TernQueue

/// Group commit: a lone call goes at once by itself, from its caller's task; calls that come
/// while one is in flight go together next; every caller gets its own answer or the batch's
/// error, even a caller that was cancelled meanwhile.
@Suite(.timeLimit(.minutes(2))) struct CallCoalescerTests {
    /// A sender whose first batch waits until `release` is called, recording every batch.
    final class GatedSender: Sendable {
        let batches = NIOLockedValueBox<[[Int]]>([])
        let gate: AsyncStream<Void>
        let opener: AsyncStream<Void>.Continuation
        let failing: Bool

        init(failing: Bool = false) {
            (gate, opener) = AsyncStream<Void>.makeStream()
            self.failing = failing
        }

        func send(_ items: [Int]) async throws -> [String] {
            let first = batches.withLockedValue { batches in
                batches.append(items)
                return batches.count == 1
            }
            if first {
                for await _ in gate { break }
            }
            // As `send` must (`CallCoalescer`), it answers even if its task was cancelled: the
            // coalescer must not turn that answer into a `CancellationError` either.
            if failing { throw JobQueueError(.invalidState, "refused") }
            return items.map { "answer \($0)" }
        }

        func release() { opener.yield() }
    }

    @Test func aLoneCallIsSentAtOnceByItselfFromItsCallersTask() async throws {
        // The task each batch was sent from.
        let senders = NIOLockedValueBox<[Int]>([])
        let coalescer = CallCoalescer<Int, String> { items in
            senders.withLockedValue { $0.append(withUnsafeCurrentTask { $0?.hashValue ?? 0 }) }
            return items.map { "answer \($0)" }
        }
        let caller = withUnsafeCurrentTask { $0?.hashValue ?? -1 }
        #expect(try await coalescer.call(7) == "answer 7")
        #expect(try await coalescer.call(8) == "answer 8")
        #expect(senders.withLockedValue { $0 } == [caller, caller])
    }

    @Test func callsThatComeWhileOneIsInFlightGoTogether() async throws {
        let sender = GatedSender()
        let coalescer = CallCoalescer<Int, String> { try await sender.send($0) }
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            group.addTask { (0, try await coalescer.call(0)) }
            // The first call is in flight (held at the gate) before the others come.
            while sender.batches.withLockedValue({ $0.isEmpty }) { await Task.yield() }
            for item in 1...20 { group.addTask { (item, try await coalescer.call(item)) } }
            // Give the twenty time to line up behind the first; then let it go.
            while coalescer.waitingCount != 20 { await Task.yield() }
            sender.release()
            for try await (item, answer) in group { #expect(answer == "answer \(item)") }
        }
        let batches = sender.batches.withLockedValue { $0 }
        #expect(batches.first == [0])
        #expect(batches.dropFirst().flatMap { $0 }.sorted() == Array(1...20))
        #expect(batches.count == 2)
    }

    @Test func aCallerCancelledWhileItsCallIsInFlightGetsTheOutcome() async throws {
        let sender = GatedSender()
        let coalescer = CallCoalescer<Int, String> { try await sender.send($0) }
        let caller = Task { try await coalescer.call(1) }
        while sender.batches.withLockedValue({ $0.isEmpty }) { await Task.yield() }
        caller.cancel()
        sender.release()
        #expect(try await caller.value == "answer 1")
    }

    @Test func everyCallerOfAFailedBatchGetsItsError() async throws {
        let sender = GatedSender(failing: true)
        let coalescer = CallCoalescer<Int, String> { try await sender.send($0) }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await coalescer.call(0)) == nil }
            while sender.batches.withLockedValue({ $0.isEmpty }) { await Task.yield() }
            for item in 1...5 { group.addTask { (try? await coalescer.call(item)) == nil } }
            while coalescer.waitingCount != 5 { await Task.yield() }
            sender.release()
            for try await failed in group { #expect(failed) }
        }
    }
}

