import Crypto
import Foundation
import PostgresNIO

/// A user's id.
public struct UserID: Hashable, Sendable, CustomStringConvertible {
    public let uuid: UUID
    public init(_ uuid: UUID) { self.uuid = uuid }
    public var description: String { uuid.uuidString.lowercased() }
}

/// A newly created API key; `secret` is shown once and never stored.
public struct CreatedAPIKey: Sendable {
    public let id: UUID
    public let secret: String
}

extension Store {
    /// Returns the id of the user with this e-mail, creating the user if needed.
    public func ensureUser(email: String) async throws -> UserID {
        let rows = try await database.query("""
            INSERT INTO users (id, email) VALUES (\(UUID()), \(email))
            ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(UUID.self) { return UserID(id) }
        throw StoreError(.notFound, "user could not be created")
    }

    /// Creates a user who signs in with a password (`passwordHash` is its bcrypt hash);
    /// `nil` if the e-mail is taken.
    public func createUser(email: String, passwordHash: String) async throws -> UserID? {
        let rows = try await database.query("""
            INSERT INTO users (id, email, password_hash) VALUES (\(UUID()), \(email), \(passwordHash))
            ON CONFLICT (email) DO NOTHING
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(UUID.self) { return UserID(id) }
        return nil
    }

    /// The user with this e-mail and their password hash (`nil` for a user without a password),
    /// or `nil` if there is no such user.
    public func credentials(email: String) async throws -> (user: UserID, passwordHash: String?)? {
        let rows = try await database.query("SELECT id, password_hash FROM users WHERE email = \(email)", logger: logger)
        for try await (id, hash) in rows.decode((UUID, String?).self) { return (UserID(id), hash) }
        return nil
    }

    /// Creates an API key for a user. Only its SHA-256 hash is stored.
    public func createAPIKey(for user: UserID, name: String) async throws -> CreatedAPIKey {
        let secret = "tern_" + randomToken()
        let id = UUID()
        try await database.query("""
            INSERT INTO api_keys (id, user_id, name, prefix, key_hash)
            VALUES (\(id), \(user.uuid), \(name), \(String(secret.prefix(12))), \(Self.hash(secret)))
            """, logger: logger)
        return CreatedAPIKey(id: id, secret: secret)
    }

    /// The user an API key belongs to, or `nil` if the key is unknown or revoked.
    public func user(forAPIKey secret: String) async throws -> UserID? {
        try await apiKey(secret)?.user
    }

    /// The key and its user, or `nil` if the key is unknown or revoked.
    public func apiKey(_ secret: String) async throws -> (id: UUID, user: UserID)? {
        guard secret.hasPrefix("tern_"), secret.utf8.count <= 128 else { return nil }
        let rows = try await database.query("""
            SELECT id, user_id FROM api_keys WHERE key_hash = \(Self.hash(secret)) AND revoked_at IS NULL
            """, logger: logger)
        for try await (id, user) in rows.decode((UUID, UUID).self) { return (id, UserID(user)) }
        return nil
    }

    static func hash(_ secret: String) -> ByteBuffer {
        ByteBuffer(bytes: SHA256.hash(data: Array(secret.utf8)))
    }

    /// The user's API keys, newest first (never their secrets).
    public func apiKeys(of user: UserID) async throws -> [StoredAPIKey] {
        let rows = try await database.query("""
            SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE user_id = \(user.uuid) ORDER BY created_at DESC, id
            """, logger: logger)
        var keys: [StoredAPIKey] = []
        for try await (id, name, prefix, created, revoked) in rows.decode((UUID, String, String, Date, Date?).self) {
            keys.append(StoredAPIKey(id: id, name: name, prefix: prefix, createdAt: created, revokedAt: revoked))
        }
        return keys
    }

    /// Revokes one of the user's keys (again, if it was); `false` if the user has no such key.
    /// The API also tells its instances that keep looked-up keys (`APIKeyCache`).
    @discardableResult
    public func revokeAPIKey(_ id: UUID, of user: UserID) async throws -> Bool {
        let rows = try await database.query("""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = \(id) AND user_id = \(user.uuid) RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(UUID.self) { return true }
        return false
    }
}

/// An API key as its owner may see it: its first characters, never the secret.
public struct StoredAPIKey: Sendable, Equatable {
    public let id: UUID
    public let name: String
    public let prefix: String
    public let createdAt: Date
    public let revokedAt: Date?
}

/// A secret of 32 random bytes (256 bits) in hexadecimal, for keys, sessions and CSRF tokens.
public func randomToken() -> String {
    var random = SystemRandomNumberGenerator()
    return hexadecimal((0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })
}

/// The SHA-256 of a text, in hexadecimal: how secrets are named where they are stored.
public func sha256Hex(_ text: String) -> String {
    hexadecimal(Array(SHA256.hash(data: Array(text.utf8))))
}

private func hexadecimal(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
}

extension Store {
    /// The user's e-mail, or `nil` if there is no such user.
    public func email(of user: UserID) async throws -> String? {
        let rows = try await database.query("SELECT email FROM users WHERE id = \(user.uuid)", logger: logger)
        for try await email in rows.decode(String.self) { return email }
        return nil
    }
}
