import Foundation
import TernQueue
import TernRedis

/// Requests per minute per API key and per user, shared by every API instance: one Lua script
/// checks both buckets and records the request only if both allow it (GCRA: requests are
/// spread evenly over the minute, with up to `burst` back to back). A key and its user share a
/// hash tag, so the script stays in one Redis Cluster slot.
struct RateLimiter: Sendable {
    struct Policy: Sendable {
        /// Requests a minute; `nil` for no limit.
        var perMinute: Int?
        /// Requests allowed back to back.
        var burst: Int
    }

    let redis: RedisClient
    let perKey: Policy
    let perUser: Policy

    /// Records one request of `key` (of `user`; `nil` for a browser session, which has only the
    /// user's limit), or throws `RateLimitRefusal`.
    func admit(key: UUID?, user: String) async throws {
        func interval(_ policy: Policy) -> Double { policy.perMinute.map { 60000 / Double(max(1, $0)) } ?? 0 }
        let keyInterval = key == nil ? 0 : interval(perKey)
        guard keyInterval > 0 || perUser.perMinute != nil else { return }
        let reply = try await redis.run(
            Self.script, keys: ["tern:rate:{\(user)}:key:\(key?.uuidString.lowercased() ?? "none")", "tern:rate:{\(user)}:user"],
            arguments: [keyInterval, max(1, perKey.burst), interval(perUser), max(1, perUser.burst)])
        guard let values = reply.array, values.count == 2, let wait = values[1].int else {
            throw RedisError(.unexpectedReply, "rate limit returned an unexpected reply")
        }
        if values[0].int == 0 {
            throw RateLimitRefusal(limit: (keyInterval > 0 ? perKey.perMinute : nil) ?? perUser.perMinute ?? 0, retryAfter: .milliseconds(wait))
        }
    }

    /// KEYS key bucket, user bucket; ARGV interval and burst of each (interval 0: no limit).
    /// Returns {1, 0} when admitted, {0, milliseconds to wait} when not.
    static let script = RedisScript(RedisScript.gcra + """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        local function check(key, interval, burst)
          if interval <= 0 then return 0, nil end
          return gcra(key, interval, burst, now)
        end
        local waitKey, nextKey = check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
        local waitUser, nextUser = check(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
        local wait = math.max(waitKey, waitUser)
        if wait > 0 then return {0, math.ceil(wait)} end
        if nextKey then redis.call('SET', KEYS[1], tostring(nextKey), 'PX', math.ceil(nextKey - now) + 1000) end
        if nextUser then redis.call('SET', KEYS[2], tostring(nextUser), 'PX', math.ceil(nextUser - now) + 1000) end
        return {1, 0}
        """)
}
