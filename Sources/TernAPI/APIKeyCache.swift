import Foundation
import NIOConcurrencyHelpers
import TernStore

/// The API keys this instance has looked up, by the SHA-256 of their secret (never the secret
/// itself), each for `lifetime`: a request with a known key skips PostgreSQL. A revoked key
/// still stops working at once on every instance: revoking sets a marker in Redis, kept for
/// twice `lifetime`, that each request's rate limit script checks (`RateLimiter`).
final class APIKeyCache: Sendable {
    struct Key: Sendable {
        let id: UUID
        let user: UserID
    }

    private struct Entry {
        let key: Key
        let expires: ContinuousClock.Instant
    }

    /// How long a looked-up key is trusted without asking PostgreSQL again.
    let lifetime: Duration
    /// Keys kept at most; past it, expired entries go, then all.
    let capacity: Int
    private let entries = NIOLockedValueBox([String: Entry]())

    init(lifetime: Duration = .seconds(60), capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// The key with this secret, if looked up within its lifetime.
    func key(hash: String) -> Key? {
        entries.withLockedValue { entries in
            guard let entry = entries[hash] else { return nil }
            guard entry.expires > .now else {
                entries[hash] = nil
                return nil
            }
            return entry.key
        }
    }

    /// Keeps a key found in PostgreSQL at `lookedUp` (taken before the query, so an entry
    /// never outlives a revocation marker set after the query's answer).
    func insert(_ key: Key, hash: String, lookedUp: ContinuousClock.Instant) {
        entries.withLockedValue { entries in
            if entries.count >= capacity {
                let now = ContinuousClock.now
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[hash] = Entry(key: key, expires: lookedUp + lifetime)
        }
    }

    /// Forgets a key (revoked).
    func remove(id: UUID) {
        entries.withLockedValue { entries in
            entries = entries.filter { $0.value.key.id != id }
        }
    }

    /// The Redis key marking a revoked API key; it shares the user's rate limit hash tag.
    static func revocationMarker(user: UserID, key: UUID) -> String {
        "tern:revoked:{\(user.tenant)}:\(key.uuidString.lowercased())"
    }
}
