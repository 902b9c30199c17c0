import Foundation
import TernRedis

/// Tokens a minute per bucket (an API key, a user), shared by every process. A request reserves
/// its estimate in all its buckets at once, or in none; when its job ends, the worker settles
/// the difference with the real count, so a short answer gives back what it did not use and a
/// long one pays the rest. Each bucket holds one minute of tokens (GCRA).
public struct TokenBudget: Sendable {
    /// One bucket: a Redis key and its tokens a minute.
    public struct Bucket: Codable, Sendable, Hashable {
        public let key: String
        public let perMinute: Int
        public init(key: String, perMinute: Int) {
            self.key = key
            self.perMinute = perMinute
        }
    }

    let redis: RedisClient

    public init(redis: RedisClient) { self.redis = redis }

    /// Reserves `tokens` in every bucket, or throws `RateLimitRefusal` naming the tightest one.
    /// A request larger than a bucket reserves the whole bucket (it waits for a full one).
    public func reserve(_ tokens: Int, in buckets: [Bucket]) async throws {
        guard !buckets.isEmpty, tokens > 0 else { return }
        let reply = try await redis.run(
            Self.reserveScript, keys: buckets.map(\.key), arguments: [tokens] + buckets.map { 60000 / Double(max(1, $0.perMinute)) })
        guard let values = reply.array, values.count == 2, let wait = values[0].int, let index = values[1].int else {
            throw RedisError(.unexpectedReply, "token budget returned an unexpected reply")
        }
        if wait > 0 { throw RateLimitRefusal(limit: buckets[Int(index) - 1].perMinute, retryAfter: .milliseconds(wait)) }
    }

    /// Settles a reservation with the tokens really used. With `once` (a name for the
    /// reservation, such as its job id), settling it again does nothing: a retried job that
    /// settled before its worker died is not charged twice.
    public func settle(reserved: Int, used: Int, in buckets: [Bucket], once: String? = nil) async throws {
        guard let first = buckets.first, used != reserved else { return }
        // The marker shares the first bucket's hash tag, so the script stays in one cluster slot.
        let marker = once.map { ["\(first.key):settled:\($0)"] } ?? []
        try await redis.run(
            Self.settleScript, keys: buckets.map(\.key) + marker,
            arguments: [reserved, used, marker.count] + buckets.map { 60000 / Double(max(1, $0.perMinute)) })
    }

    /// KEYS buckets; ARGV tokens, then each bucket's milliseconds per token. Returns
    /// {0, 0} when reserved, {milliseconds to wait, index of the bucket} when not.
    static let reserveScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        local tokens = tonumber(ARGV[1])
        local next = {}
        for i, key in ipairs(KEYS) do
          local interval = tonumber(ARGV[i + 1])
          local cost = math.min(tokens, math.floor(60000 / interval + 0.5))
          local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
          local wait = tat + cost * interval - 60000 - now
          if wait >= 1 then return {math.ceil(wait), i} end
          next[i] = tat + cost * interval
        end
        for i, key in ipairs(KEYS) do
          redis.call('SET', key, tostring(next[i]), 'PX', math.ceil(next[i] - now) + 1000)
        end
        return {0, 0}
        """)

    /// KEYS the buckets, then the marker if any; ARGV tokens reserved, tokens used, 1 if there is
    /// a marker, then each bucket's milliseconds per token. Each bucket was charged at most its
    /// own minute of tokens; it gets the difference to what was used (capped the same way) and
    /// never goes below empty.
    static let settleScript = RedisScript("""
        local buckets = #KEYS - tonumber(ARGV[3])
        if tonumber(ARGV[3]) == 1 and not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', 86400000) then return 0 end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        for i = 1, buckets do
          local interval = tonumber(ARGV[i + 3])
          local capacity = math.floor(60000 / interval + 0.5)
          local delta = math.min(tonumber(ARGV[2]), capacity) - math.min(tonumber(ARGV[1]), capacity)
          local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now) + delta * interval
          if tat > now then
            redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
          else
            redis.call('DEL', KEYS[i])
          end
        end
        return 0
        """)
}

/// A refused rate limit: its limit and how long until the request would pass.
public struct RateLimitRefusal: Error, Sendable {
    public let limit: Int
    public let retryAfter: Duration
    public init(limit: Int, retryAfter: Duration) {
        self.limit = limit
        self.retryAfter = retryAfter
    }
}
