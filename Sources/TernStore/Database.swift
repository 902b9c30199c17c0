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
    func withTransaction<Result>(
        logger: Logger, _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withinDeadline { try await client.withTransaction(logger: logger) { try await body($0) } }
    }

    /// Runs `operation` in a task of its own, raced by a timer. At the deadline the caller gets
    /// its error at once: a lease still waiting for a connection is cancelled, and a statement
    /// already sent (PostgresNIO cannot take it back) runs to its end in the background. A
    /// caller cancelled meanwhile returns at once too.
    private func withinDeadline<Result>(_ operation: @escaping @Sendable () async throws -> Result) async throws -> Result {
        let wasAway = away.value.load(ordering: .relaxed)
        let limit = wasAway ? min(deadline, .seconds(1)) : deadline
        let race = FirstOutcome<Handoff<Result>>()
        let work = Task {
            do {
                race.settle(.success(Handoff(try await operation())))
            } catch {
                race.settle(.failure(error))
            }
        }
        let timer = EventLoopTimer.after(limit) {
            race.settle(.failure(DeadlinePassed()))
            work.cancel()
        }
        defer { timer.cancel() }
        do {
            let answer = try await withTaskCancellationHandler {
                try await race.outcome()
            } onCancel: {
                race.settle(.failure(CancellationError()))
                work.cancel()
            }
            if wasAway { away.value.store(false, ordering: .relaxed) }
            return answer.value
        } catch is DeadlinePassed {
            away.value.store(true, ordering: .relaxed)
            throw StoreError(.unavailable, "PostgreSQL did not answer within \(limit)")
        }
    }

    private struct DeadlinePassed: Error {}
}

/// The first outcome settled (the operation's, its deadline's or its caller's cancellation),
/// handed to the one caller waiting for it; later ones are dropped.
private final class FirstOutcome<Value: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<Value, any Error>)
        case settled(Result<Value, any Error>)
        case taken
    }
    private let state = Mutex(State.pending)

    func settle(_ outcome: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            switch state {
            case .pending:
                state = .settled(outcome)
                return nil
            case .waiting(let continuation):
                state = .taken
                return continuation
            case .settled, .taken:
                return nil
            }
        }
        waiter?.resume(with: outcome)
    }

    /// Waits for the first outcome; call once.
    func outcome() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<Value, any Error>? in
                switch state {
                case .settled(let outcome):
                    state = .taken
                    return outcome
                case .pending:
                    state = .waiting(continuation)
                    return nil
                case .waiting, .taken:
                    preconditionFailure("FirstOutcome.outcome() is called once")
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Whether the database counts as away (shared by the copies of a `Database`).
private final class AwayFlag: Sendable {
    let value = Atomic(false)
}

/// A value made in one task and handed to another, which alone uses it from then on.
private struct Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
