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
        guard let (lineLength, number) = try line(body, numeric: hasNumericLine(marker), limits: limits) else { return nil }
        // Lines that hold text become strings; lengths and integers were read from the bytes.
        var line: String { body.getString(at: body.readerIndex, length: lineLength) ?? "" }
        let value: RESPValue
        switch marker {
        case UInt8(ascii: "+"):
            // "+OK", the answer to most writes, without building a string from bytes.
            let isOK = lineLength == 2 && body.getInteger(at: body.readerIndex, as: UInt16.self) == 0x4F4B
            value = .simpleString(isOK ? "OK" : line)
        case UInt8(ascii: "-"): value = .error(line)
        case UInt8(ascii: ":"): value = .integer(number)
        case UInt8(ascii: "("): value = .bigNumber(try bigNumber(line))
        case UInt8(ascii: ","): value = .double(try double(line))
        case UInt8(ascii: "_"):
            guard lineLength == 0 else { throw RESPDecodingError(reason: "null with a payload") }
            value = .null
        case UInt8(ascii: "#"):
            switch body.getInteger(at: body.readerIndex, as: UInt8.self) {
            case UInt8(ascii: "t") where lineLength == 1: value = .boolean(true)
            case UInt8(ascii: "f") where lineLength == 1: value = .boolean(false)
            default: throw RESPDecodingError(reason: "boolean that is not t or f")
            }
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = number
            body.moveReaderIndex(forwardBy: lineLength + 2)
            if length == -1 && marker == UInt8(ascii: "$") {
                value = .bulkString(nil)
                break
            }
            guard length >= 0, length <= limits.maximumBulkLength else {
                throw RESPDecodingError(reason: "bulk length \(length) out of range")
            }
            guard body.readableBytes >= Int(length) + 2, let bytes = body.readSlice(length: Int(length)) else { return nil }
            guard body.readInteger(as: UInt16.self) == 0x0D0A else { throw RESPDecodingError(reason: "bulk string not ended by CRLF") }
            switch marker {
            case UInt8(ascii: "$"): value = .bulkString(bytes)
            case UInt8(ascii: "!"): value = .error(String(buffer: bytes))
            default:  // verbatim string: "txt:" prefix then the text
                guard bytes.readableBytes >= 4 else { throw RESPDecodingError(reason: "verbatim string without a format") }
                value = .bulkString(bytes.getSlice(at: bytes.readerIndex + 4, length: bytes.readableBytes - 4))
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = number
            body.moveReaderIndex(forwardBy: lineLength + 2)
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
        if !Self.isAggregateOrBulk(marker) { body.moveReaderIndex(forwardBy: lineLength + 2) }
        buffer = body
        return value
    }

    static func isAggregateOrBulk(_ marker: UInt8) -> Bool {
        switch marker {
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="), UInt8(ascii: "*"), UInt8(ascii: "~"),
             UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"): true
        default: false
        }
    }

    /// Whether the line after `marker` is a decimal number (an integer, a length or a count).
    static func hasNumericLine(_ marker: UInt8) -> Bool {
        marker == UInt8(ascii: ":") || isAggregateOrBulk(marker)
    }

    /// The length of the line at the front of `buffer` (up to CRLF) and, if `numeric`, the
    /// number it holds (else 0); `nil` if the line has not fully arrived.
    private static func line(_ buffer: ByteBuffer, numeric: Bool, limits: RESPLimits) throws -> (length: Int, number: Int64)? {
        try buffer.withUnsafeReadableBytes { bytes in
            let searched = bytes[..<min(bytes.count, limits.maximumLineLength + 2)]
            guard let cr = searched.firstIndex(of: 0x0D) else {
                if bytes.count > limits.maximumLineLength + 1 { throw RESPDecodingError(reason: "line longer than \(limits.maximumLineLength) bytes") }
                return nil
            }
            guard bytes.count >= cr + 2 else { return nil }
            guard bytes[cr + 1] == 0x0A else { throw RESPDecodingError(reason: "CR not followed by LF") }
            return (cr, numeric ? try integer(bytes[..<cr]) : 0)
        }
    }

    /// A decimal integer with an optional sign, read from bytes.
    static func integer<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws -> Int64 {
        var digits = bytes[...]
        var negative = false
        if let sign = digits.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.count <= 19 else { throw RESPDecodingError(reason: "invalid integer") }
        // Accumulated as a negative number, whose range reaches Int64.min.
        var value: Int64 = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { throw RESPDecodingError(reason: "invalid integer") }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.subtractingReportingOverflow(Int64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { throw RESPDecodingError(reason: "integer out of range") }
            value = sum
        }
        if negative { return value }
        guard value != .min else { throw RESPDecodingError(reason: "integer out of range") }
        return -value
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
