import Crypto
import NIOCore

/// A Lua script run with EVALSHA; the first NOSCRIPT (a restarted or flushed server) loads it
/// again transparently, so callers never see the cache.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// The SHA-1 Redis knows the script by.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
        }.joined()
    }
}

extension RedisScript {
    /// Lua for scripts that pace events (GCRA, the generic cell rate algorithm): `gcra(key,
    /// interval, burst, now)` returns how many milliseconds an event must still wait (0 or less:
    /// it may happen now) and the key's next value if it does. Events come at most one per
    /// `interval` ms, `burst` of them back to back. The caller stores the next value when it admits.
    public static let gcra = """
        local function gcra(key, interval, burst, now)
          local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
          return tat - (burst - 1) * interval - now, tat + interval
        end

        """
}

extension RedisClient {
    /// Runs a script: EVALSHA, and on NOSCRIPT loads it (SCRIPT LOAD) and retries, up to three
    /// times (a server restarting again between the load and the retry empties its cache again).
    /// `waitingThroughCancellation` as for `send`.
    @discardableResult
    public func run(
        _ script: RedisScript, keys: [String], arguments: [any RESPArgument] = [], waitingThroughCancellation: Bool = false
    ) async throws -> RESPValue {
        let tail: [any RESPArgument] = [keys.count] + keys + arguments
        let command = RESPCommand("EVALSHA", [script.sha1] + tail)
        var loads = 0
        while true {
            do {
                return try await send(command, waitingThroughCancellation: waitingThroughCancellation)
            } catch let error as RedisError where error.code == .server && error.message.hasPrefix("NOSCRIPT") && loads < 3 {
                loads += 1
                try await send(RESPCommand("SCRIPT", "LOAD", script.source), waitingThroughCancellation: waitingThroughCancellation)
            }
        }
    }
}
