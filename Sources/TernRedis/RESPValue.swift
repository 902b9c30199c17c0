import NIOCore

/// One reply from a Redis server, in RESP2 or RESP3.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    /// A bulk string; `nil` for RESP2's null bulk string.
    case bulkString(ByteBuffer?)
    case error(String)
    case integer(Int64)
    case double(Double)
    case boolean(Bool)
    case null
    case bigNumber(String)
    /// An array; `nil` for RESP2's null array.
    case array([RESPValue]?)
    case map([RESPValue: RESPValue])
    case set([RESPValue])
    /// An out-of-band push frame (pub/sub messages, invalidations).
    case push([RESPValue])

    /// The value as text, for string-like replies and integers.
    public var string: String? {
        switch self {
        case .simpleString(let s), .bigNumber(let s): s
        case .bulkString(let buffer?): String(buffer: buffer)
        case .integer(let i): String(i)
        case .double(let d): String(d)
        default: nil
        }
    }

    /// The value as an integer, for integer replies and numeric strings.
    public var int: Int64? {
        switch self {
        case .integer(let i): i
        default: string.flatMap { Int64($0) }
        }
    }

    /// The elements of an array, set or push frame; `nil` for nulls and other types.
    public var array: [RESPValue]? {
        switch self {
        case .array(let values?), .set(let values), .push(let values): values
        default: nil
        }
    }

    /// Whether this is a null reply of any protocol version.
    public var isNull: Bool {
        switch self {
        case .null, .bulkString(nil), .array(nil): true
        default: false
        }
    }
}

extension RESPValue {
    /// A flat `[field, value, field, value, ...]` array (stream entries, HGETALL) or a map, as a
    /// dictionary of strings; elements that are not strings are skipped.
    public var fieldDictionary: [String: String] {
        if case .map(let map) = self {
            var result: [String: String] = [:]
            for (key, value) in map { if let k = key.string, let v = value.string { result[k] = v } }
            return result
        }
        let list = array ?? []
        var result: [String: String] = [:]
        var index = 0
        while index + 1 < list.count {
            if let field = list[index].string, let value = list[index + 1].string { result[field] = value }
            index += 2
        }
        return result
    }
}

extension RESPValue {
    /// The entries of the first stream in an XREAD or XREADGROUP reply: `[[id, [field, value, ...]], ...]`.
    /// RESP2 sends `[[key, entries]]`, RESP3 a map `{key: entries}`; a timeout is a null.
    public var firstStreamEntries: [RESPValue] {
        switch self {
        case .map(let streams): streams.values.first?.array ?? []
        default: array?.first?.array?.last?.array ?? []
        }
    }
}
