import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Child processes of `tern up`: restarted if they die, stopped with SIGTERM (then SIGKILL after a
/// grace period) on shutdown.
final class Supervisor: Sendable {
    private struct Child {
        let process: Process
        let executable: String
        let arguments: [String]
        let environment: [String: String]
    }
    private let children = NIOLockedValueBox([String: Child]())
    private let stopping = NIOLockedValueBox(false)
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func start(_ name: String, executable: String, arguments: [String], environment: [String: String]) throws {
        guard !stopping.withLockedValue({ $0 }) else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.terminationHandler = { [weak self] process in
            guard let self, !self.stopping.withLockedValue({ $0 }) else { return }
            self.logger.error("child exited; restarting", metadata: ["child": "\(name)", "status": "\(process.terminationStatus)"])
            Thread.sleep(forTimeInterval: 1)  // a child that dies at once must not spin; start() re-checks `stopping`
            try? self.start(name, executable: executable, arguments: arguments, environment: environment)
        }
        try process.run()
        children.withLockedValue { $0[name] = Child(process: process, executable: executable, arguments: arguments, environment: environment) }
        logger.info("started", metadata: ["child": "\(name)", "pid": "\(process.processIdentifier)"])
    }

    /// Sends SIGTERM to every child and waits up to `grace` for them; SIGKILL for stragglers.
    func stopAll(grace: Duration = .seconds(20)) async {
        stopping.withLockedValue { $0 = true }
        let processes = children.withLockedValue { Array($0.values.map(\.process)) }
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
final class SignalWaiter {
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Int32>

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        sources = signals.map { number in
            signal(number, SIG_IGN)
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
