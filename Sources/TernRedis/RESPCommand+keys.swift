import NIOCore

extension RESPCommand {
    /// The keys the command touches, for routing in a Redis Cluster (all of one command's keys
    /// must live in one slot: Tern's keys share a `{hash tag}` per queue or job). Empty for
    /// commands without keys; `nil` for commands this table does not know.
    public var keys: [ByteBuffer]? {
        let arguments = Array(self.arguments.dropFirst())
        switch name {
        case "PING", "ECHO", "HELLO", "AUTH", "SELECT", "CLIENT", "INFO", "SCRIPT", "MULTI", "EXEC", "DISCARD",
             "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "CLUSTER", "FLUSHALL", "FLUSHDB", "DBSIZE", "TIME", "PUBSUB":
            return []
        case "DEL", "UNLINK", "EXISTS", "MGET", "WATCH", "TOUCH":
            return arguments
        case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX":
            return Array(arguments.dropLast())  // the last argument is the timeout
        case "MSET", "MSETNX":
            return stride(from: 0, to: arguments.count, by: 2).map { arguments[$0] }
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard arguments.count >= 2, let count = Int(String(buffer: arguments[1])), count >= 0, count <= arguments.count - 2 else { return nil }
            return Array(arguments[2..<(2 + count)])
        case "XREAD", "XREADGROUP":
            guard let streams = arguments.firstIndex(where: { String(buffer: $0).uppercased() == "STREAMS" }) else { return nil }
            let rest = arguments[(streams + 1)...]
            return Array(rest.prefix(rest.count / 2))
        case "XGROUP", "OBJECT":
            return arguments.count >= 2 ? [arguments[1]] : nil  // subcommand, then the key
        default:
            // GET, SET, INCRBY, EXPIRE, TTL, H*, L*, R*, Z*, X* (XADD, XACK, XDEL, XLEN, XRANGE,
            // XPENDING, XCLAIM, XAUTOCLAIM, XTRIM), ...: the key comes first.
            return arguments.first.map { [$0] }
        }
    }
}

/// Redis Cluster's key to slot mapping (CRC16/XMODEM of the key or of its `{hash tag}`, mod 16384).
public enum RedisHashSlot {
    public static func slot(for key: ByteBuffer) -> Int {
        var bytes = Array(key.readableBytesView)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            bytes = Array(bytes[(open + 1)..<close])
        }
        return Int(crc16(bytes) % 16384)
    }

    public static func slot(for key: String) -> Int { slot(for: ByteBuffer(string: key)) }

    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}
