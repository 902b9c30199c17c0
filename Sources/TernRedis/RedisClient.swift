import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A Redis client and its connection pool: a few shared, pipelined connections for ordinary
/// commands (concurrent callers share them), and a lane of dedicated connections for blocking
/// commands so they never hold up the others. A dropped connection is replaced on the next call;
/// commands that were in flight on it fail with `RedisError.connectionClosed`, commands not yet
/// sent are never lost. While the server is down a circuit breaker fails callers at once.
///
/// Commands that change their connection's state (pub/sub, MULTI, WATCH, SELECT, ...) are
/// refused on the shared connections: use `RedisSubscriber`, `transaction`, `watching` or
/// `withDedicatedConnection`.
///
/// Running the client as a `Service` (`run()`) keeps the pool warm: the pipelined connections
/// and `minimumIdleDedicated` dedicated ones are opened ahead of need and idle ones past their
/// timeout are closed. Without it, connections open on first use.
public final class RedisClient: Sendable, Service {
    public let configuration: RedisConfiguration
    /// The client's logger, for components built on it.
    public let logger: Logger
    var pool: RedisConfiguration.Pool { configuration.pool }

    private struct State {
        var shared: [Task<RedisConnection, any Error>?]
        var nextShared = 0
        var idleDedicated: [(connection: RedisConnection, since: ContinuousClock.Instant)] = []
        var dedicatedInUse = 0
        /// Callers waiting for a dedicated place, oldest first.
        var waiters: [(id: Int, stage: WaiterStage)] = []
        var nextWaiterID = 0
        var isShutdown = false
        /// Circuit breaker: after a failed connect, callers fail fast until this instant, and the
        /// wait doubles (up to the configured maximum) with each further failure.
        var retryAfter: ContinuousClock.Instant?
        var backoff: Duration
    }
    private let state: NIOLockedValueBox<State>

    /// Where a caller waiting for a dedicated place stands. It registers before it suspends, so
    /// a place freed, a timeout or a cancellation in between is never missed.
    private enum WaiterStage {
        case registered
        case waiting(CheckedContinuation<Void, any Error>)
        case granted
        case failed(any Error)
    }

    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "tern.redis")) {
        self.configuration = configuration
        self.logger = logger
        state = NIOLockedValueBox(State(
            shared: Array(repeating: nil, count: max(1, configuration.pool.pipelinedConnections)), backoff: configuration.reconnectBackoff))
    }

    /// Sends one command on a shared connection. An error reply throws `RedisError.server`. A
    /// caller whose task is cancelled stops waiting, unless `waitingThroughCancellation`
    /// (`RedisConnection.send`).
    @discardableResult
    public func send(_ command: RESPCommand, waitingThroughCancellation: Bool = false) async throws -> RESPValue {
        try Self.refuseConnectionScoped([command])
        return try await sharedConnection().send(command, waitingThroughCancellation: waitingThroughCancellation)
    }

    /// Sends one command built from its name and arguments.
    @discardableResult
    public func send(_ name: String, _ arguments: any RESPArgument...) async throws -> RESPValue {
        try await send(RESPCommand(name, arguments))
    }

    /// Sends several commands with one flush on a shared connection.
    public func pipeline(_ commands: [RESPCommand]) async throws -> [Result<RESPValue, RedisError>] {
        try Self.refuseConnectionScoped(commands)
        return try await sharedConnection().pipeline(commands)
    }

    /// MULTI, `commands`, EXEC, written as one pipeline so nothing of another caller can come
    /// between them on the shared connection.
    func transactionPipeline(_ commands: [RESPCommand]) async throws -> [Result<RESPValue, RedisError>] {
        try Self.refuseConnectionScoped(commands)
        return try await sharedConnection().pipeline([RESPCommand("MULTI")] + commands + [RESPCommand("EXEC")])
    }

    private static func refuseConnectionScoped(_ commands: [RESPCommand]) throws {
        guard let command = commands.first(where: \.isConnectionScoped) else { return }
        throw RedisError(
            .invalidArgument,
            "\(command.name) changes the state of its connection; use RedisSubscriber for pub/sub, transaction or watching for MULTI/WATCH, withDedicatedConnection otherwise")
    }

    /// Runs `body` with a connection nobody else uses (for blocking commands such as XREAD BLOCK).
    /// The connection returns to the lane if `body` succeeds; if it throws (or is cancelled
    /// mid-command) the connection is closed, since a reply may still be on its way.
    /// At most `maximumDedicated` are in use at once; later callers wait for one.
    public func withDedicatedConnection<Result: Sendable>(
        _ body: (RedisConnection) async throws -> Result
    ) async throws -> Result {
        try await reserveDedicated()
        defer { releaseDedicated() }
        let connection: RedisConnection
        if let reused = takeIdleDedicated() { connection = reused } else { connection = try await connect() }
        do {
            let result = try await body(connection)
            let keep = state.withLockedValue { state in
                guard !state.isShutdown, connection.isActive, state.idleDedicated.count < pool.maximumIdleDedicated else { return false }
                state.idleDedicated.append((connection, ContinuousClock.now))
                return true
            }
            if !keep { connection.close() }
            return result
        } catch {
            connection.close()
            throw error
        }
    }

    /// Keeps the pool warm until graceful shutdown (or cancellation), then closes every connection.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.maintain()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await shutdown()
    }

    /// Opens the pipelined connections and the minimum of idle dedicated ones; closes idle
    /// ones past their timeout.
    func maintain() async {
        for index in 0..<max(1, pool.pipelinedConnections) { _ = try? await sharedConnection(index) }
        closeStaleIdle()
        let missing = state.withLockedValue { state in
            state.isShutdown ? 0 : max(0, pool.minimumIdleDedicated - state.idleDedicated.count)
        }
        for _ in 0..<missing {
            guard let connection = try? await connect() else { return }
            let kept = state.withLockedValue { state in
                guard !state.isShutdown else { return false }
                state.idleDedicated.append((connection, ContinuousClock.now))
                return true
            }
            if !kept { connection.close() }
        }
    }

    /// Closes every connection; calls waiting for a dedicated connection fail.
    public func shutdown() async {
        let (shared, idle, waiters) = state.withLockedValue { state in
            state.isShutdown = true
            let waiters = state.waiters
            // A waiter that has not suspended yet learns of the shutdown when it does; one already
            // granted a place (or failed) keeps its outcome.
            state.waiters = state.waiters.compactMap { waiter in
                switch waiter.stage {
                case .registered: (waiter.id, .failed(RedisError(.connectionClosed, "client is shut down")))
                case .granted, .failed: waiter
                case .waiting: nil  // resumed with the error below
                }
            }
            defer { state.shared = state.shared.map { _ in nil }; state.idleDedicated = [] }
            return (state.shared, state.idleDedicated, waiters)
        }
        idle.forEach { $0.connection.close() }
        for waiter in waiters {
            if case .waiting(let continuation) = waiter.stage { continuation.resume(throwing: RedisError(.connectionClosed, "client is shut down")) }
        }
        for task in shared {
            if let connection = try? await task?.value { connection.close() }
        }
    }

    // MARK: Dedicated lane

    private func takeIdleDedicated() -> RedisConnection? {
        closeStaleIdle()
        return state.withLockedValue { $0.idleDedicated.popLast()?.connection }
    }

    private func closeStaleIdle() {
        let stale = state.withLockedValue { state in
            let cutoff = ContinuousClock.now - pool.idleTimeout
            let isStale = { (idle: (connection: RedisConnection, since: ContinuousClock.Instant)) in
                idle.since < cutoff || !idle.connection.isActive
            }
            defer { state.idleDedicated.removeAll(where: isStale) }
            return state.idleDedicated.filter(isStale).map(\.connection)
        }
        stale.forEach { $0.close() }
    }

    /// Takes one of the `maximumDedicated` places, waiting up to `maximumWait` for one.
    private func reserveDedicated() async throws {
        let id = try state.withLockedValue { state -> Int? in
            if state.isShutdown { throw RedisError(.connectionClosed, "client is shut down") }
            if state.dedicatedInUse < pool.maximumDedicated {
                state.dedicatedInUse += 1
                return nil
            }
            state.nextWaiterID += 1
            state.waiters.append((state.nextWaiterID, .registered))
            return state.nextWaiterID
        }
        guard let id else { return }
        let timeout = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(pool.maximumWait)) {
            self.stopWaiting(id, RedisError(.poolExhausted, "all \(self.pool.maximumDedicated) dedicated connections stayed busy"))
        }
        defer { timeout.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let outcome = state.withLockedValue { state -> Result<Void, any Error>? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return .failure(CancellationError()) }
                    switch state.waiters[index].stage {
                    case .registered:
                        state.waiters[index].stage = .waiting(continuation)
                        return nil
                    case .granted:
                        state.waiters.remove(at: index)
                        return .success(())
                    case .failed(let error):
                        state.waiters.remove(at: index)
                        return .failure(error)
                    case .waiting:
                        preconditionFailure("a waiter suspends once")
                    }
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            stopWaiting(id, CancellationError())
        }
    }

    private func stopWaiting(_ id: Int, _ error: any Error) {
        let continuation = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            switch state.waiters[index].stage {
            case .registered:
                state.waiters[index].stage = .failed(error)
                return nil
            case .waiting(let continuation):
                state.waiters.remove(at: index)
                return continuation
            case .granted, .failed:
                return nil
            }
        }
        continuation?.resume(throwing: error)
    }

    /// Gives the place to the longest waiter, or frees it.
    private func releaseDedicated() {
        let continuation = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
            guard let index = state.waiters.firstIndex(where: {
                if case .registered = $0.stage { return true }
                if case .waiting = $0.stage { return true }
                return false
            }) else {
                state.dedicatedInUse -= 1
                return nil
            }
            if case .waiting(let continuation) = state.waiters[index].stage {
                state.waiters.remove(at: index)
                return continuation
            }
            state.waiters[index].stage = .granted
            return nil
        }
        continuation?.resume()
    }

    // MARK: Shared lane

    private func sharedConnection(_ chosen: Int? = nil) async throws -> RedisConnection {
        for _ in 0..<2 {
            let (index, task) = try state.withLockedValue { state -> (Int, Task<RedisConnection, any Error>) in
                if state.isShutdown { throw RedisError(.connectionClosed, "client is shut down") }
                let index = chosen ?? state.nextShared
                if chosen == nil { state.nextShared = (state.nextShared + 1) % state.shared.count }
                if let task = state.shared[index] { return (index, task) }
                // Unstructured on purpose: the connect is shared by every caller that arrives
                // while it runs, so it must not belong to (or be cancelled with) any one of them.
                let task = Task { try await self.connect() }
                state.shared[index] = task
                return (index, task)
            }
            do {
                let connection = try await task.value
                if connection.isActive { return connection }
                logger.info("redis connection lost, reconnecting")
            } catch {
                state.withLockedValue { if $0.shared[index] == task { $0.shared[index] = nil } }
                throw error
            }
            state.withLockedValue { if $0.shared[index] == task { $0.shared[index] = nil } }
        }
        throw RedisError(.connectFailed, "could not establish a connection")
    }

    /// Connects, unless the breaker is open: while the server is down, callers get an error at
    /// once instead of each trying (and waiting) again.
    private func connect() async throws -> RedisConnection {
        let retryAfter = state.withLockedValue { $0.retryAfter }
        if let retryAfter, ContinuousClock.now < retryAfter {
            throw RedisError(.connectFailed, "\(configuration.host):\(configuration.port) is unavailable; retrying shortly")
        }
        do {
            let connection = try await RedisConnection.connect(to: configuration, logger: logger)
            state.withLockedValue { state in
                state.retryAfter = nil
                state.backoff = configuration.reconnectBackoff
            }
            return connection
        } catch {
            state.withLockedValue { state in
                state.retryAfter = ContinuousClock.now + state.backoff
                state.backoff = min(state.backoff * 2, configuration.maximumReconnectBackoff)
            }
            throw error
        }
    }
}
