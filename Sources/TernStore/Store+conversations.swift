import Foundation
import PostgresNIO

/// A conversation as listed.
public struct ConversationSummary: Sendable, Equatable {
    public let id: UUID
    public let title: String
    public let createdAt: Date
    public let updatedAt: Date
}

extension Store {
    /// Creates an empty conversation.
    public func createConversation(for user: UserID, title: String) async throws -> ConversationSummary {
        let id = UUID()
        let rows = try await database.query("""
            INSERT INTO conversations (id, user_id, title) VALUES (\(id), \(user.uuid), \(title)) RETURNING created_at, updated_at
            """, logger: logger)
        for try await (created, updated) in rows.decode((Date, Date).self) {
            return ConversationSummary(id: id, title: title, createdAt: created, updatedAt: updated)
        }
        throw StoreError(.notFound, "the new conversation was not returned")
    }

    /// The user's conversations, most recently updated first: `limit` of them, after the one
    /// `after` (a page's last id) if given.
    public func conversations(of user: UserID, limit: Int, after: UUID?) async throws -> [ConversationSummary] {
        let rows = try await database.query("""
            SELECT c.id, c.title, c.created_at, c.updated_at FROM conversations c
            WHERE c.user_id = \(user.uuid) AND (\(after)::uuid IS NULL OR (c.updated_at, c.id) < (
                SELECT updated_at, id FROM conversations WHERE id = \(after) AND user_id = \(user.uuid)))
            ORDER BY c.updated_at DESC, c.id DESC LIMIT \(limit)
            """, logger: logger)
        var result: [ConversationSummary] = []
        for try await (id, title, created, updated) in rows.decode((UUID, String, Date, Date).self) {
            result.append(ConversationSummary(id: id, title: title, createdAt: created, updatedAt: updated))
        }
        return result
    }

    /// One of the user's conversations, or `nil`.
    public func conversation(_ id: UUID, of user: UserID) async throws -> ConversationSummary? {
        let rows = try await database.query("""
            SELECT title, created_at, updated_at FROM conversations WHERE id = \(id) AND user_id = \(user.uuid)
            """, logger: logger)
        for try await (title, created, updated) in rows.decode((String, Date, Date).self) {
            return ConversationSummary(id: id, title: title, createdAt: created, updatedAt: updated)
        }
        return nil
    }

    /// Renames one of the user's conversations; `false` if there is none.
    public func renameConversation(_ id: UUID, of user: UserID, to title: String) async throws -> Bool {
        let rows = try await database.query("""
            UPDATE conversations SET title = \(title), updated_at = now() WHERE id = \(id) AND user_id = \(user.uuid) RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(UUID.self) { return true }
        return false
    }

    /// Deletes one of the user's conversations with its messages (its jobs' usage stays).
    public func deleteConversation(_ id: UUID, of user: UserID) async throws -> Bool {
        let rows = try await database.query("""
            DELETE FROM conversations WHERE id = \(id) AND user_id = \(user.uuid) RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(UUID.self) { return true }
        return false
    }
}
