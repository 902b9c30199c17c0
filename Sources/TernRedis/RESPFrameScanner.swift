import NIOCore

/// Finds where a complete top-level reply ends, resuming where the last call stopped, so a
/// large reply arriving in many reads is scanned once instead of being parsed again from its
/// start on every read. Only framing is checked here; `RESPDecoder` then builds the value from
/// the complete frame, once.
public struct RESPFrameScanner: Sendable {
    public let limits: RESPLimits
    /// Bytes of the current frame already scanned, from the buffer's reader index.
    private var offset = 0
    /// Elements still expected by each open aggregate, innermost last.
    private var remaining: [Int] = []

    public init(limits: RESPLimits = .init()) { self.limits = limits }

    /// The length of the complete frame at the front of `buffer`, or `nil` until it has arrived.
    /// After a frame is returned the scanner starts afresh at the next one.
    public mutating func frameLength(in buffer: ByteBuffer) throws -> Int? {
        let view = buffer.readableBytesView
        while true {
            let start = view.startIndex + offset
            guard start < view.endIndex else { return nil }
            let searchEnd = min(view.endIndex, start + limits.maximumLineLength + 2)
            guard let cr = view[start..<searchEnd].firstIndex(of: 0x0D) else {
                if searchEnd - start > limits.maximumLineLength + 1 { throw RESPDecodingError(reason: "line longer than \(limits.maximumLineLength) bytes") }
                return nil
            }
            guard cr + 1 < view.endIndex else { return nil }
            guard view[cr + 1] == 0x0A else { throw RESPDecodingError(reason: "CR not followed by LF") }
            guard cr > start else { throw RESPDecodingError(reason: "line without a type byte") }
            let header = view[(start + 1)..<cr]
            var next = cr + 2 - view.startIndex
            var opens = 0
            switch view[start] {
            case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
                let length = try RESPDecoder.integer(header)
                if length >= 0 {
                    guard length <= limits.maximumBulkLength else { throw RESPDecodingError(reason: "bulk length \(length) out of range") }
                    guard view.count >= next + Int(length) + 2 else { return nil }  // rescan this header next time
                    next += Int(length) + 2
                }
            case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
                let count = try RESPDecoder.integer(header)
                guard count <= limits.maximumAggregateCount else { throw RESPDecodingError(reason: "aggregate length \(count) out of range") }
                switch view[start] {
                case UInt8(ascii: "%"): opens = Int(max(count, 0)) * 2
                case UInt8(ascii: "|"): opens = Int(max(count, 0)) * 2 + 1  // the attributes, then the value
                default: opens = Int(max(count, 0))
                }
            case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "("), UInt8(ascii: ","),
                 UInt8(ascii: "_"), UInt8(ascii: "#"):
                break
            default:
                throw RESPDecodingError(reason: "unknown type byte \(view[start])")
            }
            offset = next
            if opens > 0 {
                guard remaining.count < limits.maximumDepth else { throw RESPDecodingError(reason: "nesting deeper than \(limits.maximumDepth)") }
                remaining.append(opens)
                continue
            }
            // An element is complete: so is every aggregate it was the last element of.
            while let last = remaining.last {
                if last > 1 {
                    remaining[remaining.count - 1] = last - 1
                    break
                }
                remaining.removeLast()
            }
            if remaining.isEmpty {
                defer { offset = 0 }
                return offset
            }
        }
    }
}
