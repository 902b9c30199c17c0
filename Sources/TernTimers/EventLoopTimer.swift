import NIOCore
import NIOPosix

/// Sleeps on a timer of SwiftNIO's shared event loops (those that carry the process's sockets
/// and, in `tern`, run its tasks) instead of Swift concurrency's default timers, which are
/// Dispatch's: there a sleep wakes a Dispatch thread to end it, and a sleep cancelled early
/// keeps its timer until the time it was set for. Per request (a statement's deadline, a model
/// call's watchdog) that was a tenth of the API's and the worker's CPU under load. Here a
/// cancelled sleep takes its timer away at once.
public enum EventLoopTimer {
    /// Returns after `duration`; throws `CancellationError` if the task is cancelled first.
    public static func sleep(for duration: Duration) async throws {
        let timer = after(duration) {}
        try await withTaskCancellationHandler {
            do {
                try await timer.futureResult.get()
            } catch {
                throw CancellationError()
            }
        } onCancel: {
            timer.cancel()
        }
    }

    /// Returns at `deadline`; throws `CancellationError` if the task is cancelled first.
    public static func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await sleep(for: deadline - .now)
    }

    /// Runs `action` on an event loop after `duration`, unless the returned task is cancelled first.
    @discardableResult
    public static func after(_ duration: Duration, _ action: @escaping @Sendable () -> Void) -> Scheduled<Void> {
        MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(duration), action)
    }

    /// Calls `tick` every `interval`, on an event loop, until the returned task is cancelled.
    public static func repeating(every interval: Duration, _ tick: @escaping @Sendable () -> Void) -> RepeatedTask {
        let amount = TimeAmount(interval)
        return MultiThreadedEventLoopGroup.singleton.any().scheduleRepeatedTask(initialDelay: amount, delay: amount) { _ in tick() }
    }
}
