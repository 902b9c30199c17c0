import NIOCore
import NIOSSL

/// Where and how to reach Redis.
public struct RedisConfiguration: Sendable {
    /// Host name or address.
    public var host: String = "127.0.0.1"
    /// TCP port.
    public var port: Int = 6379
    /// ACL user name (Redis 6+); `nil` for the default user.
    public var username: String?
    /// Password; `nil` when the server has none.
    public var password: String?
    /// Logical database number.
    public var database: Int = 0
    /// How long to wait for a TCP connection.
    public var connectTimeout: TimeAmount = .seconds(5)
    /// 3 to ask for RESP3 with HELLO (falling back to RESP2 on servers before Redis 6), or 2.
    public var protocolVersion: Int = 3
    /// Name shown in CLIENT LIST, set during the handshake.
    public var clientName: String? = "tern"
    /// TLS settings; `nil` for plain TCP. `rediss://` URLs turn it on with the system's roots.
    public var tls: TLSConfiguration?
    /// How long a reply may take. A connection whose oldest command has waited longer is
    /// closed (RESP cannot skip one reply) and its commands fail with `timedOut`. Commands that
    /// wait on the server (BLPOP, XREAD BLOCK) get their blocking time on top.
    public var commandTimeout: TimeAmount = .seconds(10)
    /// A connection with no traffic for this long sends PING, so a dead peer or a silently
    /// dropped NAT mapping is found before a caller needs the connection; `nil` never pings.
    public var keepAliveInterval: TimeAmount? = .seconds(30)
    /// How `RedisClient` shares connections.
    public var pool = Pool()
    /// After a failed connect, callers fail at once (the circuit is open) for this long; the
    /// wait doubles with each further failure, up to `maximumReconnectBackoff`.
    public var reconnectBackoff: Duration = .milliseconds(25)
    public var maximumReconnectBackoff: Duration = .seconds(1)

    /// How `RedisClient` shares connections among its callers.
    public struct Pool: Sendable {
        /// Connections for ordinary commands; concurrent callers are pipelined on them, spread
        /// round-robin.
        public var pipelinedConnections: Int = 2
        /// Most dedicated connections (blocking commands, WATCH) in use at once; past it callers
        /// wait up to `maximumWait` for one, then fail with `poolExhausted`.
        public var maximumDedicated: Int = 256
        /// How long a caller waits for a dedicated connection when all are in use.
        public var maximumWait: Duration = .seconds(5)
        /// Idle dedicated connections `RedisClient.run()` keeps open and ready.
        public var minimumIdleDedicated: Int = 0
        /// Most idle dedicated connections kept for reuse; any more are closed when returned.
        public var maximumIdleDedicated: Int = 16
        /// An idle dedicated connection unused this long is closed.
        public var idleTimeout: Duration = .seconds(60)

        public init() {}
    }

    public init() {}

    /// Reads a `redis://` or `rediss://` (TLS) URL: `[user[:password]@]host[:port][/database]`.
    public init(url: String) throws {
        var rest: Substring
        if url.hasPrefix("redis://") {
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("rediss://") {
            rest = url.dropFirst("rediss://".count)
            tls = .makeClientConfiguration()
        } else {
            throw RedisError(.invalidConfiguration, "the URL must start with redis:// or rediss://")
        }
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let database = Int(path), database >= 0 else {
                    throw RedisError(.invalidConfiguration, "database in the URL must be a number")
                }
                self.database = database
            }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = userInfo[..<colon]
                username = user.isEmpty ? nil : String(user).removingPercentEncoding
                password = String(userInfo[userInfo.index(after: colon)...]).removingPercentEncoding
            } else if !userInfo.isEmpty {
                password = String(userInfo).removingPercentEncoding
            }
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
                throw RedisError(.invalidConfiguration, "port in the URL must be 1-65535")
            }
            self.port = port
            rest = rest[..<colon]
        }
        if !rest.isEmpty { host = String(rest) }
    }
}

extension String {
    /// Decodes `%XX` escapes; `nil` when an escape is malformed.
    fileprivate var removingPercentEncoding: String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
