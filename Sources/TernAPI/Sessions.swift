import Foundation
import NIOCore
import TernRedis
import TernStore

/// A signed-in browser: its user and the CSRF token its cookie-authenticated writes must carry.
struct Session: Sendable {
    let user: UserID
    let csrfToken: String
}

/// Server-side sessions in Redis, shared by every API instance. The cookie holds a random
/// token; Redis holds only the token's SHA-256, so a leaked dump cannot sign anyone in.
/// Logging out deletes the session everywhere at once.
struct SessionStore: Sendable {
    static let cookieName = "tern_session"

    let redis: RedisClient
    /// How long a session lasts, in seconds.
    let lifetime: Int

    /// Starts a session for `user`; returns the cookie's token.
    func create(for user: UserID) async throws -> (token: String, session: Session) {
        let token = randomToken()
        let session = Session(user: user, csrfToken: randomToken())
        _ = try await redis.set(Self.key(token), to: "\(user) \(session.csrfToken)", expiresIn: lifetime)
        return (token, session)
    }

    /// The session of a cookie's token, or `nil` if it is unknown, expired or ended.
    func find(_ token: String) async throws -> Session? {
        guard token.utf8.count == 64, let value = try await redis.get(Self.key(token)) else { return nil }
        let parts = String(buffer: value).split(separator: " ")
        guard parts.count == 2, let user = UUID(uuidString: String(parts[0])) else { return nil }
        return Session(user: UserID(user), csrfToken: String(parts[1]))
    }

    func delete(_ token: String) async throws {
        _ = try await redis.delete([Self.key(token)])
    }

    static func key(_ token: String) -> String { "tern:session:\(sha256Hex(token))" }
}
