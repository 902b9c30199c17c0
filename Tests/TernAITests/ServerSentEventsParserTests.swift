import Testing
import TernAI

@Suite struct ServerSentEventsParserTests {
    static let stream = "data: {\"a\":1}\r\n\r\n: comment\n\nevent: update\ndata: line one\ndata: line two\nid: 7\n\ndata:[DONE]\r\r"

    @Test func parsesEventsWhateverTheSplit() throws {
        let bytes = Array(Self.stream.utf8)
        let expected = [
            ServerSentEvent(event: nil, data: "{\"a\":1}", id: nil),
            ServerSentEvent(event: "update", data: "line one\nline two", id: "7"),
            ServerSentEvent(event: nil, data: "[DONE]", id: "7"),
        ]
        for split in 0...bytes.count {
            var parser = ServerSentEventsParser()
            let events = try parser.feed(bytes[..<split]) + parser.feed(bytes[split...])
            #expect(events == expected, "split at \(split)")
        }
        var parser = ServerSentEventsParser()
        #expect(try bytes.flatMap { try parser.feed([$0]) } == expected)
    }

    @Test func aSequenceWithoutContiguousStorageGivesTheSameEvents() throws {
        var parser = ServerSentEventsParser()
        #expect(try parser.feed(Self.stream.utf8.lazy.map { $0 }).map(\.data) == ["{\"a\":1}", "line one\nline two", "[DONE]"])
    }

    @Test func aLineMayHoldItsBoundExactlyWhereverItIsSplit() throws {
        let line = Array("data: 12".utf8)  // 8 bytes
        for split in 0...line.count {
            var parser = ServerSentEventsParser(maximumLineLength: 8, maximumEventSize: 1024)
            _ = try parser.feed(line[..<split])
            _ = try parser.feed(line[split...])
            #expect(try parser.feed(Array("\n\n".utf8)) == [ServerSentEvent(data: "12")])
            var over = ServerSentEventsParser(maximumLineLength: 8, maximumEventSize: 1024)
            _ = try over.feed(line[..<split])
            #expect(throws: ServerSentEventsError.self) { try over.feed(line[split...] + Array("3".utf8)) }
        }
    }

    @Test func boundsLinesAndEvents() {
        var lines = ServerSentEventsParser(maximumLineLength: 8, maximumEventSize: 1024)
        #expect(throws: ServerSentEventsError.self) { try lines.feed(Array("data: 0123456789\n".utf8)) }
        var events = ServerSentEventsParser(maximumLineLength: 64, maximumEventSize: 10)
        #expect(throws: ServerSentEventsError.self) { try events.feed(Array("data: 123456\ndata: 123456\n".utf8)) }
    }
}
