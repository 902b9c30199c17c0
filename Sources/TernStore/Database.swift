import Logging
import PostgresNIO
import Synchronization
import TernTimers

/// PostgresClient as the repositories use it, with a deadline: a statement that has not begun
/// to answer within `deadline` (a connection from the pool, then the server's first reply) gives
/// up with `StoreError.unavailable`. While PostgreSQL is away, the client's pool waits for a
/// connection without end; a request must get its 503, and a job its retry, instead. Once a
/// statement has run out of time, the database counts as away until one answers, and statements
/// meanwhile wait 1 s at most: during an outage only the first requests wait the whole deadline.
struct Database: Sendable {
    let client: PostgresClient
    let deadline: Duration
    private let away = AwayFlag()

    init(client: PostgresClient, deadline: Duration) {
        self.client = client
        self.deadline = deadline
    }

    @discardableResult
    func query(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        try await withinDeadline { try await client.query(query, logger: logger) }
    }

    func execute<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger
    ) async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row> {
        try await withinDeadline { try await client.execute(statement, logger: logger) }
    }

    /// The whole transaction must end within the deadline.
    func withTransaction<Result>(logger: Logger, _ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        try await withinDeadline { try await client.withTransaction(logger: logger) { try await body($0) } }
    }

    /// Runs `operation` in a child task raced by a timer. A lease waiting for a connection is
    /// cancelled with the task; a statement already sent runs to its end, but its caller has
    /// its answer (the error) at the deadline.
    private func withinDeadline<Result>(_ operation: () async throws -> Result) async throws -> Result {
        let wasAway = away.value.load(ordering: .relaxed)
        let limit = wasAway ? min(deadline, .seconds(1)) : deadline
        return try await withoutActuallyEscaping(operation) { operation in
            // The child task ends before this function returns (the group awaits it), so the
            // closure and its result never outlive the call or run concurrently with it.
            let call = Unchecked(operation)
            return try await withThrowingTaskGroup(of: Unchecked<Result>?.self) { group in
                group.addTask { Unchecked(try await call.value()) }
                group.addTask {
                    try await EventLoopTimer.sleep(for: limit)
                    return nil
                }
                defer { group.cancelAll() }
                guard let answer = try await group.next() ?? nil else {
                    away.value.store(true, ordering: .relaxed)
                    throw StoreError(.unavailable, "PostgreSQL did not answer within \(limit)")
                }
                if wasAway { away.value.store(false, ordering: .relaxed) }
                return answer.value
            }
        }
    }
}

/// Whether the database counts as away (shared by the copies of a `Database`).
private final class AwayFlag: Sendable {
    let value = Atomic(false)
}

/// A value handed to a child task that is awaited before its owner goes on.
private struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
