import NIOCore

/// Limits that keep a malformed or hostile reply from using unbounded memory or stack.
public struct RESPLimits: Sendable {
    /// Largest bulk string accepted, in bytes.
    public var maximumBulkLength: Int = 64 * 1024 * 1024
    /// Longest simple line (status, error, number), in bytes.
    public var maximumLineLength: Int = 64 * 1024
    /// Deepest nesting of aggregates.
    public var maximumDepth: Int = 32
    /// Most elements in one aggregate.
    public var maximumAggregateCount: Int = 1_048_576

    public init() {}
}

/// A framing error in bytes read from the server; the connection cannot be used after it.
public struct RESPDecodingError: Error, CustomStringConvertible, Hashable {
    public let reason: String
    public var description: String { "malformed RESP: \(reason)" }
}

/// Decodes RESP2 and RESP3 replies. Returns `nil` until a whole value has arrived, and never
/// consumes a partial value, so it works under any split of the input.
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue
    public let limits: RESPLimits

    public init(limits: RESPLimits = .init()) { self.limits = limits }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        var copy = buffer
        guard let value = try Self.parse(&copy, depth: 0, limits: limits) else { return nil }
        buffer = copy
        return value
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try decode(buffer: &buffer)
    }

    /// Parses one value from the front of `buffer`, or returns `nil` if more bytes are needed.
    static func parse(_ buffer: inout ByteBuffer, depth: Int, limits: RESPLimits) throws -> RESPValue? {
        guard depth <= limits.maximumDepth else { throw RESPDecodingError(reason: "nesting deeper than \(limits.maximumDepth)") }
        guard let marker = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        var body = buffer
        body.moveReaderIndex(forwardBy: 1)
        guard let line = try readLine(&body, limits: limits) else { return nil }
        let value: RESPValue
        switch marker {
        case UInt8(ascii: "+"): value = .simpleString(line)
        case UInt8(ascii: "-"): value = .error(line)
        case UInt8(ascii: ":"): value = .integer(try integer(line))
        case UInt8(ascii: "("): value = .bigNumber(try bigNumber(line))
        case UInt8(ascii: ","): value = .double(try double(line))
        case UInt8(ascii: "_"):
            guard line.isEmpty else { throw RESPDecodingError(reason: "null with a payload") }
            value = .null
        case UInt8(ascii: "#"):
            switch line {
            case "t": value = .boolean(true)
            case "f": value = .boolean(false)
            default: throw RESPDecodingError(reason: "boolean that is not t or f")
            }
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try integer(line)
            if length == -1 && marker == UInt8(ascii: "$") {
                value = .bulkString(nil)
                break
            }
            guard length >= 0, length <= limits.maximumBulkLength else {
                throw RESPDecodingError(reason: "bulk length \(length) out of range")
            }
            guard body.readableBytes >= Int(length) + 2 else { return nil }
            let bytes = body.readSlice(length: Int(length))!
            guard body.readInteger(as: UInt16.self) == 0x0D0A else { throw RESPDecodingError(reason: "bulk string not ended by CRLF") }
            switch marker {
            case UInt8(ascii: "$"): value = .bulkString(bytes)
            case UInt8(ascii: "!"): value = .error(String(buffer: bytes))
            default:  // verbatim string: "txt:" prefix then the text
                guard bytes.readableBytes >= 4 else { throw RESPDecodingError(reason: "verbatim string without a format") }
                value = .bulkString(bytes.getSlice(at: bytes.readerIndex + 4, length: bytes.readableBytes - 4))
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = try integer(line)
            if count == -1 && marker == UInt8(ascii: "*") {
                value = .array(nil)
                break
            }
            guard count >= 0, count <= limits.maximumAggregateCount else {
                throw RESPDecodingError(reason: "aggregate length \(count) out of range")
            }
            let isKeyed = marker == UInt8(ascii: "%") || marker == UInt8(ascii: "|")
            // An element takes at least 3 bytes: refuse counts the buffer cannot possibly hold yet
            // only after reading what is there, so memory stays bounded by the input.
            var elements: [RESPValue] = []
            let total = Int(count) * (isKeyed ? 2 : 1)
            elements.reserveCapacity(min(total, 1024))
            for _ in 0..<total {
                guard let element = try parse(&body, depth: depth + 1, limits: limits) else { return nil }
                elements.append(element)
            }
            switch marker {
            case UInt8(ascii: "*"): value = .array(elements)
            case UInt8(ascii: "~"): value = .set(elements)
            case UInt8(ascii: ">"): value = .push(elements)
            case UInt8(ascii: "%"):
                var map: [RESPValue: RESPValue] = [:]
                for i in stride(from: 0, to: elements.count, by: 2) { map[elements[i]] = elements[i + 1] }
                value = .map(map)
            default:  // attributes describe the next value: read it and return that value
                guard let next = try parse(&body, depth: depth + 1, limits: limits) else { return nil }
                value = next
            }
        default:
            throw RESPDecodingError(reason: "unknown type byte \(marker)")
        }
        buffer = body
        return value
    }

    /// Reads up to CRLF; `nil` if the line has not fully arrived.
    private static func readLine(_ buffer: inout ByteBuffer, limits: RESPLimits) throws -> String? {
        let view = buffer.readableBytesView
        let searchEnd = view.index(view.startIndex, offsetBy: min(view.count, limits.maximumLineLength + 2))
        guard let cr = view[view.startIndex..<searchEnd].firstIndex(of: 0x0D) else {
            if view.count > limits.maximumLineLength + 1 { throw RESPDecodingError(reason: "line longer than \(limits.maximumLineLength) bytes") }
            return nil
        }
        let length = cr - view.startIndex
        guard view.count >= length + 2 else { return nil }
        guard view[cr + 1] == 0x0A else { throw RESPDecodingError(reason: "CR not followed by LF") }
        let line = buffer.readString(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func integer(_ line: String) throws -> Int64 {
        guard let value = Int64(line) else { throw RESPDecodingError(reason: "invalid integer") }
        return value
    }

    private static func double(_ line: String) throws -> Double {
        switch line {
        case "inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "-nan": return .nan
        default:
            guard let value = Double(line) else { throw RESPDecodingError(reason: "invalid double") }
            return value
        }
    }

    private static func bigNumber(_ line: String) throws -> String {
        let digits = line.hasPrefix("-") || line.hasPrefix("+") ? line.dropFirst() : Substring(line)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw RESPDecodingError(reason: "invalid big number")
        }
        return line
    }
}
