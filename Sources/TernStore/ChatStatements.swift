import Foundation
import PostgresNIO

// The statements every chat request runs (one from the API as it starts, one from the worker
// as it ends), prepared once per connection: PostgreSQL parses them once and, after a few runs, reuses a generic plan.
// Parsed and planned on every run they cost about as much server time as running them.

/// What a `WITH job AS (...)` write returns: whether it changed the job's row, and whether the
/// row exists at all.
struct JobWrite: Sendable {
    let changed: Bool
    let stored: Bool
}

/// The tail of every job write: $1 is always the job's id.
private let jobWriteResult = "\nSELECT (SELECT count(*) FROM job) > 0, EXISTS (SELECT 1 FROM jobs WHERE id = $1)"

/// A prepared write of one job's row, ending in `jobWriteResult`.
protocol JobWriteStatement: PostgresPreparedStatement where Row == JobWrite {
    var job: UUID { get }
}

extension JobWriteStatement {
    func decodeRow(_ row: PostgresRow) throws -> JobWrite {
        let (changed, stored) = try row.decode((Bool, Bool).self)
        return JobWrite(changed: changed, stored: stored)
    }
}

/// A conversation (new, or the user's own, continued) with its new messages and its queued
/// chat job (`Store.createChat`); no row, and nothing written, if it is another user's.
struct CreateChatStatement: PostgresPreparedStatement {
    static let sql = """
        WITH conversation AS (
            INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET updated_at = now() WHERE conversations.user_id = EXCLUDED.user_id
            RETURNING id
        ), message AS (
            INSERT INTO messages (conversation_id, role, content)
            SELECT conversation.id, m.role, m.content
            FROM conversation, unnest($4::text[], $5::text[]) WITH ORDINALITY AS m (role, content, n)
            ORDER BY m.n
        )
        INSERT INTO jobs (id, user_id, api_key_id, conversation_id, kind, model)
        SELECT $6, $2, $7, conversation.id, 'chat', $8 FROM conversation
        RETURNING id
        """
    typealias Row = UUID

    let conversation: UUID
    let user: UUID
    let title: String
    let roles: [String]
    let contents: [String]
    let job: UUID
    let apiKey: UUID?
    let model: String

    func makeBindings() throws -> PostgresBindings {
        var binds = PostgresBindings(capacity: 8)
        binds.append(conversation)
        binds.append(user)
        binds.append(title)
        binds.append(roles)
        binds.append(contents)
        binds.append(job)
        binds.append(apiKey)
        binds.append(model)
        return binds
    }

    func decodeRow(_ row: PostgresRow) throws -> UUID { try row.decode(UUID.self) }
}

/// Marks a job failed with a reason safe to show its owner (`Store.failJob`).
struct FailJobStatement: JobWriteStatement {
    static let sql = """
        WITH job AS (
            UPDATE jobs SET status = 'failed', finished_at = now(), error = $2,
                attempts = greatest(attempts, $3), started_at = coalesce(started_at, $4)
            WHERE id = $1 AND status IN ('queued', 'active')
            RETURNING id
        )
        """ + jobWriteResult
    typealias Row = JobWrite

    let job: UUID
    let reason: String
    let run: JobRun?

    func makeBindings() throws -> PostgresBindings {
        var binds = PostgresBindings(capacity: 4)
        binds.append(job)
        binds.append(reason)
        binds.append(run?.attempt ?? 0)
        binds.append(run?.startedAt)
        return binds
    }
}

/// Stores the assistant's answer and finishes the job, once (`Store.completeChatJob`,
/// `Store.stopChatJob`).
struct FinishChatJobStatement: JobWriteStatement {
    static let sql = """
        WITH job AS (
            UPDATE jobs SET status = $2, finished_at = now(), error = NULL, prompt_tokens = $5, completion_tokens = $6,
                attempts = greatest(attempts, $8), started_at = coalesce(started_at, $9, now())
            WHERE id = $1 AND status IN ('queued', 'active', 'failed')
            RETURNING id, conversation_id
        ), answer AS (
            INSERT INTO messages (conversation_id, role, content, job_id, model, prompt_tokens, completion_tokens, citations)
            SELECT conversation_id, 'assistant', $3, $1, $4, $5, $6, $7::jsonb
            FROM job WHERE conversation_id IS NOT NULL AND ($2 = 'completed' OR $3 <> '')
        ), touched AS (
            UPDATE conversations SET updated_at = now() WHERE id IN (SELECT conversation_id FROM job)
        )
        """ + jobWriteResult
    typealias Row = JobWrite

    let job: UUID
    let status: String
    let answer: String
    let model: String
    let usage: TokenUsage
    let citations: String?
    let run: JobRun?

    func makeBindings() throws -> PostgresBindings {
        var binds = PostgresBindings(capacity: 9)
        binds.append(job)
        binds.append(status)
        binds.append(answer)
        binds.append(model)
        binds.append(usage.promptTokens)
        binds.append(usage.completionTokens)
        binds.append(citations)
        binds.append(run?.attempt ?? 1)
        binds.append(run?.startedAt)
        return binds
    }
}
