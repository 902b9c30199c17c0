import Foundation
import PostgresNIO

/// One chat message as stored.
public struct StoredMessage: Sendable, Equatable {
    public let role: String
    public let content: String
    /// An answer's sources, as JSON (see `Citation` in TernAI).
    public let citations: String?
    /// An answer whose job was cancelled (Stop) before it was complete.
    public let stopped: Bool
    public init(role: String, content: String, citations: String? = nil, stopped: Bool = false) {
        self.role = role
        self.content = content
        self.citations = citations
        self.stopped = stopped
    }
}

/// The attempt of a job that ends it. A job's row is written when the job ends, not when it
/// starts (the queue in Redis knows what runs): the ending attempt is counted in `attempts`,
/// and its start is the row's `started_at` unless one was recorded before.
public struct JobRun: Sendable {
    public let attempt: Int
    public let startedAt: Date

    public init(attempt: Int, startedAt: Date) {
        self.attempt = attempt
        self.startedAt = startedAt
    }
}

/// Token counts of one generation.
public struct TokenUsage: Sendable, Equatable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

extension Store {
    /// Creates the conversation `conversationID`, or continues it if it is `user`'s, with its new
    /// messages and a queued chat job, in one statement (one round trip, one commit); a continued
    /// conversation keeps its title. Throws `notFound`, with nothing written, if the conversation
    /// is another user's.
    @discardableResult
    public func createChat(
        user: UserID, apiKey: UUID? = nil, jobID: UUID, conversationID: UUID = UUID(), model: String, title: String,
        messages: [StoredMessage]
    ) async throws -> UUID {
        let statement = CreateChatStatement(
            conversation: conversationID, user: user.uuid, title: title, roles: messages.map(\.role), contents: messages.map(\.content),
            job: jobID, apiKey: apiKey, model: model)
        for try await _ in try await database.execute(statement, logger: logger) { return conversationID }
        throw StoreError(.notFound, "conversation \(conversationID) belongs to another user")
    }

    /// Records a queued job without a conversation (an embedding request, ...).
    public func createJob(user: UserID, apiKey: UUID? = nil, jobID: UUID, kind: String, model: String) async throws {
        try await database.query("""
            INSERT INTO jobs (id, user_id, api_key_id, kind, model) VALUES (\(jobID), \(user.uuid), \(apiKey), \(kind), \(model))
            """, logger: logger)
    }

    /// Completes jobs without a conversation and records their usage, once, in one statement.
    public func completeJobs(_ jobs: [(id: UUID, usage: TokenUsage)]) async throws {
        guard !jobs.isEmpty else { return }
        try await database.query("""
            UPDATE jobs SET status = 'completed', finished_at = now(), error = NULL,
                started_at = coalesce(started_at, now()), attempts = greatest(attempts, 1),
                prompt_tokens = done.prompt, completion_tokens = done.completion
            FROM unnest(\(jobs.map(\.id))::uuid[], \(jobs.map(\.usage.promptTokens))::int[], \(jobs.map(\.usage.completionTokens))::int[])
                AS done (id, prompt, completion)
            WHERE jobs.id = done.id AND jobs.status IN ('queued', 'active', 'failed')
            """, logger: logger)
    }

    /// Stores the assistant's answer and completes the job, once, in one statement: a second
    /// call for the same job (a redelivered job that had already finished) changes nothing and
    /// returns `false`. Throws `jobNotStored` without the job's row.
    @discardableResult
    public func completeChatJob(
        _ jobID: UUID, answer: String, model: String, usage: TokenUsage, citations: String? = nil, run: JobRun? = nil
    ) async throws -> Bool {
        try await finishChatJob(jobID, status: "completed", answer: answer, model: model, usage: usage, citations: citations, run: run)
    }

    /// Stores the part of the answer streamed before the job was cancelled (if any) and the
    /// tokens it used, and marks the job cancelled, once.
    @discardableResult
    public func stopChatJob(
        _ jobID: UUID, answer: String, model: String, usage: TokenUsage, citations: String? = nil, run: JobRun? = nil
    ) async throws -> Bool {
        try await finishChatJob(jobID, status: "cancelled", answer: answer, model: model, usage: usage, citations: citations, run: run)
    }

    private func finishChatJob(
        _ jobID: UUID, status: String, answer: String, model: String, usage: TokenUsage, citations: String?, run: JobRun?
    ) async throws -> Bool {
        try await writeJob(FinishChatJobStatement(
            job: jobID, status: status, answer: answer, model: model, usage: usage, citations: citations, run: run))
    }

    /// Runs a prepared write of one job's row and returns whether it changed the row; throws
    /// `jobNotStored` if there is no such row (yet).
    @discardableResult
    private func writeJob(_ statement: some JobWriteStatement) async throws -> Bool {
        for try await write in try await database.execute(statement, logger: logger) {
            guard write.stored else { throw StoreError(.jobNotStored, "job \(statement.job) is not stored") }
            return write.changed
        }
        return false
    }

    /// Marks a job cancelled before it ran (no tokens used).
    public func cancelJob(_ jobID: UUID) async throws {
        try await database.query("""
            UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = \(jobID) AND status IN ('queued', 'active')
            """, logger: logger)
    }

    /// Marks a job failed with a reason safe to show its owner (and the attempt that failed
    /// it, if one ran); throws `jobNotStored` without its row.
    public func failJob(_ jobID: UUID, reason: String, run: JobRun? = nil) async throws {
        try await writeJob(FailJobStatement(job: jobID, reason: reason, run: run))
    }

    /// The messages of a conversation, oldest first, only if it belongs to `user`.
    public func messages(conversation: UUID, user: UserID) async throws -> [StoredMessage] {
        try await thread(conversation: conversation, user: user).messages
    }

    /// The messages of a conversation, oldest first, and its chat job that has not ended yet
    /// (the newest if several), only if it belongs to `user`. One statement, so one snapshot:
    /// a job that ends meanwhile is either still pending with its answer not yet among the
    /// messages, or done with it there.
    public func thread(conversation: UUID, user: UserID) async throws -> (messages: [StoredMessage], pendingJob: UUID?) {
        let rows = try await database.query("""
            SELECT m.role, m.content, m.citations::text, m.role = 'assistant' AND j.status = 'cancelled',
                (SELECT p.id FROM jobs p WHERE p.conversation_id = \(conversation) AND p.user_id = \(user.uuid) AND p.status IN ('queued', 'active')
                 ORDER BY p.created_at DESC LIMIT 1)
            FROM conversations c JOIN messages m ON m.conversation_id = c.id LEFT JOIN jobs j ON j.id = m.job_id
            WHERE c.id = \(conversation) AND c.user_id = \(user.uuid) ORDER BY m.id
            """, logger: logger)
        var messages: [StoredMessage] = []
        var pending: UUID?
        for try await (role, content, citations, stopped, job) in rows.decode((String, String, String?, Bool?, UUID?).self) {
            messages.append(StoredMessage(role: role, content: content, citations: citations, stopped: stopped ?? false))
            pending = job
        }
        return (messages, pending)
    }

    /// The status of a job owned by `user`, or `nil` when there is none.
    public func jobStatus(_ jobID: UUID, user: UserID) async throws -> (status: String, attempts: Int)? {
        let rows = try await database.query("""
            SELECT status, attempts FROM jobs WHERE id = \(jobID) AND user_id = \(user.uuid)
            """, logger: logger)
        for try await (status, attempts) in rows.decode((String, Int).self) { return (status, attempts) }
        return nil
    }

    /// Tokens the user's finished jobs (completed, or cancelled after some output) used, per day (UTC) and model, from `since` on.
    /// With `apiKey`, only the jobs requested with that key.
    public func usage(of user: UserID, since: Date, apiKey: UUID? = nil) async throws -> [UsageRow] {
        let rows = try await database.query("""
            SELECT to_char(date_trunc('day', finished_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD'), model, count(*),
                   coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
            FROM jobs
            WHERE user_id = \(user.uuid) AND finished_at >= \(since)
                AND (status = 'completed' OR (status = 'cancelled' AND completion_tokens > 0))
                AND (\(apiKey)::uuid IS NULL OR api_key_id = \(apiKey))
            GROUP BY 1, 2 ORDER BY 1, 2
            """, logger: logger)
        var usage: [UsageRow] = []
        for try await (day, model, requests, prompt, completion) in rows.decode((String, String, Int, Int, Int).self) {
            usage.append(UsageRow(day: day, model: model, requests: requests, promptTokens: prompt, completionTokens: completion))
        }
        return usage
    }
}

/// One day's use of one model.
public struct UsageRow: Sendable, Equatable, Encodable {
    public let day: String
    public let model: String
    public let requests: Int
    public let promptTokens: Int
    public let completionTokens: Int

    enum CodingKeys: String, CodingKey {
        case day, model, requests
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
    }
}
