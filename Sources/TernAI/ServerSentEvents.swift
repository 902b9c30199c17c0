/// One Server-Sent Event.
public struct ServerSentEvent: Sendable, Equatable {
    public var event: String?
    public var data: String
    public var id: String?

    public init(event: String? = nil, data: String, id: String? = nil) {
        self.event = event
        self.data = data
        self.id = id
    }
}

/// An error for an event stream that breaks the parser's bounds.
public struct ServerSentEventsError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { "invalid event stream: \(reason)" }
}

/// Incremental Server-Sent Events parser (WHATWG rules): bytes in, whole events out. Handles
/// frames split anywhere, LF, CR and CRLF line ends, comments and multi-line `data:`; bounds the
/// line and event size so a broken upstream cannot grow memory without limit.
public struct ServerSentEventsParser: Sendable {
    public let maximumLineLength: Int
    public let maximumEventSize: Int

    private var line: [UInt8] = []
    private var lastWasCR = false
    private var data: [String] = []
    private var dataSize = 0
    private var event: String?
    private var id: String?

    public init(maximumLineLength: Int = 1 << 20, maximumEventSize: Int = 4 << 20) {
        self.maximumLineLength = maximumLineLength
        self.maximumEventSize = maximumEventSize
    }

    /// Feeds bytes; returns the events they complete.
    public mutating func feed<Bytes: Sequence<UInt8>>(_ bytes: Bytes) throws -> [ServerSentEvent] {
        if let events = try bytes.withContiguousStorageIfAvailable({ try feed(contiguous: $0) }) { return events }
        return try Array(bytes).withUnsafeBufferPointer { try feed(contiguous: $0) }
    }

    /// Takes the bytes between line ends a run at a time (every piece of every answer comes
    /// this way).
    private mutating func feed(contiguous bytes: UnsafeBufferPointer<UInt8>) throws -> [ServerSentEvent] {
        var events: [ServerSentEvent] = []
        var index = 0
        while index < bytes.count {
            if lastWasCR, bytes[index] == UInt8(ascii: "\n") {
                // The LF of a CRLF: that line has ended already.
                lastWasCR = false
                index += 1
                continue
            }
            var end = index
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n"), bytes[end] != UInt8(ascii: "\r") { end += 1 }
            guard line.count + (end - index) <= maximumLineLength else {
                throw ServerSentEventsError(reason: "line longer than \(maximumLineLength) bytes")
            }
            line.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<end]))
            lastWasCR = false
            if end < bytes.count {
                lastWasCR = bytes[end] == UInt8(ascii: "\r")
                if let event = try endLine() { events.append(event) }
                end += 1
            }
            index = end
        }
        return events
    }

    private mutating func endLine() throws -> ServerSentEvent? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            defer { data = []; dataSize = 0; event = nil }
            guard !data.isEmpty else { return nil }
            return ServerSentEvent(event: event, data: data.joined(separator: "\n"), id: id)
        }
        if line.first == UInt8(ascii: ":") { return nil }  // comment
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = String(decoding: line[..<(colon ?? line.endIndex)], as: UTF8.self)
        var valueStart = colon.map { line.index(after: $0) } ?? line.endIndex
        if valueStart < line.endIndex && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = String(decoding: line[valueStart...], as: UTF8.self)
        switch field {
        case "data":
            dataSize += value.utf8.count + 1
            guard dataSize <= maximumEventSize else {
                throw ServerSentEventsError(reason: "event larger than \(maximumEventSize) bytes")
            }
            data.append(value)
        case "event": event = value
        case "id": if !value.contains("\0") { id = value }
        default: break  // "retry" and unknown fields do not matter to a client of a model server
        }
        return nil
    }
}
