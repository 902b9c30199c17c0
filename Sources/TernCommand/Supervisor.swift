import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Child processes of `tern up`: restarted if they die, stopped with SIGTERM (then SIGKILL after a
/// grace period) on shutdown.
final class Supervisor: Sendable {
    private struct State {
        var children: [String: Process] = [:]
        var stopping = false
    }
    private let state = NIOLockedValueBox(State())
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// Starts a child; does nothing once `stopAll` has begun. Starting and registering happen
    /// under one lock, so `stopAll` either sees the child or prevents it.
    func start(_ name: String, executable: String, arguments: [String], environment: [String: String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.terminationHandler = { [weak self] process in
            // Wait a moment first: a Ctrl-C reaches the children and tern up together, and a
            // child that dies at once must not be restarted in a tight loop.
            Thread.sleep(forTimeInterval: 1)
            guard let self, !self.state.withLockedValue({ $0.stopping }) else { return }
            self.logger.error("child exited; restarting", metadata: ["child": "\(name)", "status": "\(process.terminationStatus)"])
            try? self.start(name, executable: executable, arguments: arguments, environment: environment)
        }
        let started = try state.withLockedValue { state -> Bool in
            guard !state.stopping else { return false }
            try process.runWithDefaultSignalMask()
            state.children[name] = process
            return true
        }
        if started { logger.info("started", metadata: ["child": "\(name)", "pid": "\(process.processIdentifier)"]) }
    }

    /// Sends SIGTERM to every child and waits up to `grace` for them; SIGKILL for stragglers.
    func stopAll(grace: Duration = .seconds(20)) async {
        let processes = state.withLockedValue { state in
            state.stopping = true
            return Array(state.children.values)
        }
        for process in processes where process.isRunning { process.terminate() }
        let deadline = ContinuousClock.now + grace
        while processes.contains(where: \.isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for process in processes where process.isRunning {
            logger.warning("child did not stop in time; killing", metadata: ["pid": "\(process.processIdentifier)"])
            kill(process.processIdentifier, SIGKILL)
        }
        for process in processes { process.waitUntilExit() }
    }
}

/// Waits for one of a set of signals (their default action is disabled while it lives).
/// The disposition is a no-op handler, not SIG_IGN: an ignored signal stays ignored in every
/// program this process starts, and a server that ignores SIGTERM cannot be stopped.
final class SignalWaiter {
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Int32>

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        sources = signals.map { number in
            signal(number, { _ in })
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    func next() async -> Int32 {
        for await number in stream { return number }
        return SIGTERM
    }
}
