import NIOConcurrencyHelpers
import NIOCore
import Testing
import TernTimers

/// Sleeps and ticks on the event loops' timers: never early, and cancelled at once.
@Suite(.timeLimit(.minutes(1))) struct EventLoopTimerTests {
    @Test func aSleepLastsAtLeastItsDuration() async throws {
        let start = ContinuousClock.now
        try await EventLoopTimer.sleep(for: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        let deadline = ContinuousClock.now + .milliseconds(30)
        try await EventLoopTimer.sleep(until: deadline)
        #expect(ContinuousClock.now >= deadline)
        try await EventLoopTimer.sleep(until: .now - .seconds(1))  // a deadline passed: at once
    }

    @Test func aCancelledSleepThrowsCancellationErrorLongBeforeItsEnd() async throws {
        let start = ContinuousClock.now
        let sleeper = Task { try await EventLoopTimer.sleep(for: .seconds(3600)) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        let alreadyCancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await EventLoopTimer.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await alreadyCancelled.value }
        #expect(ContinuousClock.now - start < .seconds(60))
    }

    @Test func ticksComeUntilCancelled() async throws {
        let (ticks, tick) = AsyncStream.makeStream(of: Void.self)
        let count = NIOLockedValueBox(0)
        let timer = EventLoopTimer.repeating(every: .milliseconds(10)) {
            count.withLockedValue { $0 += 1 }
            tick.yield()
        }
        var iterator = ticks.makeAsyncIterator()
        for _ in 0..<3 { await iterator.next() }
        timer.cancel()
        let afterCancel = count.withLockedValue { $0 }
        try await EventLoopTimer.sleep(for: .milliseconds(100))
        // A tick already running as the cancel came may still count; none after it.
        #expect(count.withLockedValue { $0 } <= afterCancel + 1)
        #expect(afterCancel >= 3)
    }
}
