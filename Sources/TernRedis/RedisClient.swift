import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A Redis client: one shared, pipelined connection for ordinary commands (concurrent callers
/// share it), and a lane of dedicated connections for blocking commands so they never hold up
/// the others. A dropped connection is replaced on the next call; commands that were in flight on
/// it fail with `RedisError.connectionClosed`, commands not yet sent are never lost.
/// Pub/sub commands do not belong here (their answers are push frames): use `RedisSubscriber`.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    /// The client's logger, for components built on it.
    public let logger: Logger
    /// Idle dedicated connections kept for reuse.
    let maximumIdleDedicated: Int
    /// An idle dedicated connection older than this is closed instead of reused.
    let idleTimeout: Duration

    private struct State {
        var shared: Task<RedisConnection, any Error>?
        var idleDedicated: [(connection: RedisConnection, since: ContinuousClock.Instant)] = []
        var isShutdown = false
        /// Circuit breaker: after a failed connect, callers fail fast until this instant, and the
        /// wait doubles (up to a second) with each further failure.
        var retryAfter: ContinuousClock.Instant?
        var backoff: Duration = .milliseconds(25)
    }
    private let state = NIOLockedValueBox(State())

    public init(
        configuration: RedisConfiguration, maximumIdleDedicated: Int = 16, idleTimeout: Duration = .seconds(60),
        logger: Logger = Logger(label: "tern.redis")
    ) {
        self.configuration = configuration
        self.maximumIdleDedicated = maximumIdleDedicated
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    /// Sends one command on the shared connection. An error reply throws `RedisError.server`.
    @discardableResult
    public func send(_ command: RESPCommand) async throws -> RESPValue {
        try await sharedConnection().send(command)
    }

    /// Sends one command built from its name and arguments.
    @discardableResult
    public func send(_ name: String, _ arguments: any RESPArgument...) async throws -> RESPValue {
        try await send(RESPCommand(name, arguments))
    }

    /// Sends several commands with one flush on the shared connection.
    public func pipeline(_ commands: [RESPCommand]) async throws -> [Result<RESPValue, RedisError>] {
        try await sharedConnection().pipeline(commands)
    }

    /// Runs `body` with a connection nobody else uses (for blocking commands such as XREAD BLOCK).
    /// The connection returns to the lane if `body` succeeds; if it throws (or is cancelled
    /// mid-command) the connection is closed, since a reply may still be on its way.
    public func withDedicatedConnection<Result: Sendable>(
        _ body: (RedisConnection) async throws -> Result
    ) async throws -> Result {
        // The most recently used idle connection; those idle too long (or dropped) are closed.
        let (reused, stale) = state.withLockedValue { state in
            let cutoff = ContinuousClock.now - idleTimeout
            let stale = state.idleDedicated.filter { $0.since < cutoff || !$0.connection.isActive }.map(\.connection)
            state.idleDedicated.removeAll { $0.since < cutoff || !$0.connection.isActive }
            return (state.idleDedicated.popLast()?.connection, stale)
        }
        stale.forEach { $0.close() }
        let connection: RedisConnection
        if let reused { connection = reused } else { connection = try await connect() }
        do {
            let result = try await body(connection)
            let keep = state.withLockedValue { state in
                guard !state.isShutdown, connection.isActive, state.idleDedicated.count < maximumIdleDedicated else { return false }
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

    /// Closes every connection.
    public func shutdown() async {
        let (shared, idle) = state.withLockedValue { state in
            state.isShutdown = true
            defer { state.shared = nil; state.idleDedicated = [] }
            return (state.shared, state.idleDedicated)
        }
        idle.forEach { $0.connection.close() }
        if let connection = try? await shared?.value { connection.close() }
    }

    private func sharedConnection() async throws -> RedisConnection {
        for _ in 0..<2 {
            let task = try state.withLockedValue { state -> Task<RedisConnection, any Error> in
                if state.isShutdown { throw RedisError(.connectionClosed, "client is shut down") }
                if let task = state.shared { return task }
                // Unstructured on purpose: the connect is shared by every caller that arrives
                // while it runs, so it must not belong to (or be cancelled with) any one of them.
                let task = Task { try await self.connect() }
                state.shared = task
                return task
            }
            do {
                let connection = try await task.value
                if connection.isActive { return connection }
                logger.info("redis connection lost, reconnecting")
            } catch {
                state.withLockedValue { if $0.shared == task { $0.shared = nil } }
                throw error
            }
            state.withLockedValue { if $0.shared == task { $0.shared = nil } }
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
                state.backoff = .milliseconds(25)
            }
            return connection
        } catch {
            state.withLockedValue { state in
                state.retryAfter = ContinuousClock.now + state.backoff
                state.backoff = min(state.backoff * 2, .seconds(1))
            }
            throw error
        }
    }
}
