/// An error from the Redis client: a server error reply, or a connection problem.
public struct RedisError: Error, CustomStringConvertible, Hashable {
    public enum Code: String, Sendable {
        /// The server answered with an error reply.
        case server
        /// The connection closed before the reply arrived; the command may or may not have run.
        case connectionClosed
        /// The server could not be reached.
        case connectFailed
        /// A reply did not have the shape the command expects.
        case unexpectedReply
        /// The configuration (URL) is invalid.
        case invalidConfiguration
        /// A call's arguments are invalid.
        case invalidArgument
        /// No reply came within the command timeout; the connection was closed.
        case timedOut
        /// Every dedicated connection stayed in use for longer than the connect timeout.
        case poolExhausted
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "redis \(code.rawValue): \(message)" }

    /// Whether the server could not be reached, went away or is not ready yet (still loading its
    /// data after a restart): nothing was wrong with the command, and later it may succeed.
    public var isUnavailable: Bool {
        switch code {
        case .connectionClosed, .connectFailed, .timedOut, .poolExhausted: true
        case .server: message.hasPrefix("LOADING") || message.hasPrefix("MASTERDOWN") || message.hasPrefix("TRYAGAIN")
        default: false
        }
    }
}
