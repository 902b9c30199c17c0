import NIOCore

/// A command as Redis receives it: an array of bulk strings.
public struct RESPCommand: Sendable, Hashable {
    public var arguments: [ByteBuffer]

    public init(_ name: String, _ arguments: [any RESPArgument] = []) {
        self.arguments = [ByteBuffer(string: name)] + arguments.map(\.respBuffer)
    }

    public init(_ name: String, _ arguments: any RESPArgument...) {
        self.init(name, arguments)
    }

    /// The command's name, upper-cased, for logs and errors.
    public var name: String { arguments.first.map { String(buffer: $0).uppercased() } ?? "" }

    /// Writes the command in RESP framing.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.readableBytes)\r\n")
            buffer.writeImmutableBuffer(argument)
            buffer.writeStaticString("\r\n")
        }
    }
}

/// A value that can be sent as one argument of a command.
public protocol RESPArgument: Sendable {
    var respBuffer: ByteBuffer { get }
}

extension String: RESPArgument { public var respBuffer: ByteBuffer { ByteBuffer(string: self) } }
extension Substring: RESPArgument { public var respBuffer: ByteBuffer { ByteBuffer(string: String(self)) } }
extension Int: RESPArgument { public var respBuffer: ByteBuffer { ByteBuffer(string: String(self)) } }
extension Int64: RESPArgument { public var respBuffer: ByteBuffer { ByteBuffer(string: String(self)) } }
extension Double: RESPArgument { public var respBuffer: ByteBuffer { ByteBuffer(string: String(self)) } }
extension ByteBuffer: RESPArgument { public var respBuffer: ByteBuffer { self } }
