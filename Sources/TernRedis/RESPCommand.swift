import NIOCore

/// A command as Redis receives it: an array of bulk strings, encoded once when it is built, so
/// sending it is a single buffer write.
public struct RESPCommand: Sendable, Hashable {
    /// The command in RESP framing.
    public let encoded: ByteBuffer
    /// Whether the command changes its connection's state for the commands after it (pub/sub
    /// modes, MULTI, WATCH, SELECT, ...): never sent alone on a connection others share.
    public let isConnectionScoped: Bool

    public init(_ name: String, _ arguments: [any RESPArgument] = []) {
        isConnectionScoped = Self.connectionScoped.contains(name.uppercased())
        var buffer = ByteBufferAllocator().buffer(capacity: 16 + name.utf8.count + 24 * arguments.count)
        buffer.writeInteger(UInt8(ascii: "*"))
        buffer.writeDecimal(arguments.count + 1)
        buffer.writeCRLF()
        name.writeBulk(into: &buffer)
        for argument in arguments { argument.writeBulk(into: &buffer) }
        encoded = buffer
    }

    public init(_ name: String, _ arguments: any RESPArgument...) {
        self.init(name, arguments)
    }

    /// The name and arguments, read back from the encoding (for keys, logs and errors).
    public var arguments: [ByteBuffer] {
        var buffer = encoded
        var result: [ByteBuffer] = []
        guard let array = try? RESPDecoder.parse(&buffer, depth: 0, limits: RESPLimits()), let elements = array.array else { return [] }
        for element in elements { if case .bulkString(let bytes?) = element { result.append(bytes) } }
        return result
    }

    static let connectionScoped: Set<String> = [
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "HELLO", "AUTH", "RESET", "QUIT",
    ]

    /// The command's name, upper-cased.
    public var name: String { arguments.first.map { String(buffer: $0).uppercased() } ?? "" }
}

/// A value that can be sent as one argument of a command.
public protocol RESPArgument: Sendable {
    /// Writes the value as a RESP bulk string: `$<length>\r\n<bytes>\r\n`.
    func writeBulk(into buffer: inout ByteBuffer)
}

extension String: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "$"))
        buffer.writeDecimal(utf8.count)
        buffer.writeCRLF()
        buffer.writeString(self)
        buffer.writeCRLF()
    }
}

extension Substring: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension ByteBuffer: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "$"))
        buffer.writeDecimal(readableBytes)
        buffer.writeCRLF()
        buffer.writeImmutableBuffer(self)
        buffer.writeCRLF()
    }
}

extension Int: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        String(self).writeBulk(into: &buffer)  // at most 20 characters: a small string, no allocation
    }
}

extension Int64: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension Double: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension ByteBuffer {
    /// Writes a non-negative integer in decimal, without building a string.
    mutating func writeDecimal(_ value: Int) {
        precondition(value >= 0)
        if value < 10 {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            writeInteger(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    mutating func writeCRLF() { writeInteger(UInt16(0x0D0A)) }
}
