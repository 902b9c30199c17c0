import Foundation
import HTTPTypes
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
    /// user's limit) and returns the tightest limit's state (`nil` without limits), or throws
    /// `RateLimitRefusal`. With `revocationMarker` (a key taken from `APIKeyCache`), it first
    /// checks in the same round trip that the key was not revoked, or throws `KeyRevoked`.
    @discardableResult
    func admit(key: UUID?, user: String, revocationMarker: String? = nil) async throws -> RateLimitStatus? {
        func interval(_ policy: Policy) -> Double { policy.perMinute.map { 60000 / Double(max(1, $0)) } ?? 0 }
        let keyInterval = key == nil ? 0 : interval(perKey)
        guard keyInterval > 0 || perUser.perMinute != nil else {
            // No limit applies: the revocation alone is checked, with one EXISTS, no script run.
            if let revocationMarker, try await redis.send("EXISTS", revocationMarker).int == 1 { throw KeyRevoked() }
            return nil
        }
        let reply = try await redis.run(
            Self.script,
            keys: [
                "tern:rate:{\(user)}:key:\(key?.uuidString.lowercased() ?? "none")", "tern:rate:{\(user)}:user",
                revocationMarker ?? "tern:revoked:{\(user)}:none",
            ],
            arguments: [keyInterval, max(1, perKey.burst), interval(perUser), max(1, perUser.burst), revocationMarker == nil ? 0 : 1])
        guard let values = reply.array?.compactMap(\.int), let verdict = values.first else {
            throw RedisError(.unexpectedReply, "rate limit returned an unexpected reply")
        }
        if verdict == -1 { throw KeyRevoked() }
        if verdict == 2 { return nil }
        guard values.count >= 3 else { throw RedisError(.unexpectedReply, "rate limit returned an unexpected reply") }
        let limit = (values[1] == 1 ? perKey.perMinute : perUser.perMinute) ?? 0
        guard verdict == 1, values.count == 4 else { throw RateLimitRefusal(limit: limit, retryAfter: .milliseconds(values[2])) }
        return RateLimitStatus(limit: limit, remaining: Int(values[2]), resetSeconds: Int((Double(values[3]) / 1000).rounded(.up)))
    }

    /// KEYS key bucket, user bucket, revocation marker; ARGV interval and burst of each bucket
    /// (interval 0: no limit), whether to check the marker. Returns {-1} for a revoked key,
    /// {2} when there is no limit, {1, bucket, requests remaining, milliseconds until full}
    /// when admitted (the bucket with the fewest left), {0, bucket, milliseconds to wait} when
    /// not (1: the key's bucket, 2: the user's).
    static let script = RedisScript(RedisScript.gcra + """
        if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return {-1} end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        local waits, nexts = {0, 0}, {}
        for i = 1, 2 do
          local interval = tonumber(ARGV[2 * i - 1])
          if interval > 0 then waits[i], nexts[i] = gcra(KEYS[i], interval, tonumber(ARGV[2 * i]), now) end
        end
        if waits[1] > 0 or waits[2] > 0 then
          local i = waits[1] >= waits[2] and 1 or 2
          return {0, i, math.ceil(waits[i])}
        end
        local tightest, left, full = 0, nil, 0
        for i = 1, 2 do
          if nexts[i] then
            redis.call('SET', KEYS[i], tostring(nexts[i]), 'PX', math.ceil(nexts[i] - now) + 1000)
            local interval = tonumber(ARGV[2 * i - 1])
            local remaining = math.max(0, math.floor(tonumber(ARGV[2 * i]) - (nexts[i] - now) / interval + 0.000001))
            if left == nil or remaining < left then tightest, left, full = i, remaining, nexts[i] - now end
          end
        end
        if left == nil then return {2} end
        return {1, tightest, left, math.ceil(full)}
        """)
}

/// A cached API key was revoked (on any instance).
struct KeyRevoked: Error {}

/// Where a caller stands against its tightest request limit after a request.
struct RateLimitStatus: Sendable {
    let limit: Int
    let remaining: Int
    let resetSeconds: Int

    /// The `RateLimit-*` headers.
    var headers: HTTPFields {
        var fields: HTTPFields = [:]
        fields[.init("RateLimit-Limit")!] = String(limit)
        fields[.init("RateLimit-Remaining")!] = String(remaining)
        fields[.init("RateLimit-Reset")!] = String(resetSeconds)
        return fields
    }
}
