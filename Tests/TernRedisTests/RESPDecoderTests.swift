import NIOCore
import NIOTestUtils
import Testing
@testable import TernRedis

@Suite struct RESPDecoderTests {
    static let cases: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("-ERR unknown command\r\n", .error("ERR unknown command")),
        (":-42\r\n", .integer(-42)),
        (":-9223372036854775808\r\n", .integer(.min)),
        (":9223372036854775807\r\n", .integer(.max)),
        ("$5\r\nhello\r\n", .bulkString(ByteBuffer(string: "hello"))),
        ("$0\r\n\r\n", .bulkString(ByteBuffer())),
        ("$-1\r\n", .bulkString(nil)),
        ("*-1\r\n", .array(nil)),
        ("*2\r\n$1\r\na\r\n:1\r\n", .array([.bulkString(ByteBuffer(string: "a")), .integer(1)])),
        ("_\r\n", .null),
        ("#t\r\n", .boolean(true)),
        (",3.5\r\n", .double(3.5)),
        ("(12345678901234567890\r\n", .bigNumber("12345678901234567890")),
        ("!3\r\nBAD\r\n", .error("BAD")),
        ("=8\r\ntxt:some\r\n", .bulkString(ByteBuffer(string: "some"))),
        ("~1\r\n+x\r\n", .set([.simpleString("x")])),
        ("%1\r\n+k\r\n:1\r\n", .map([.simpleString("k"): .integer(1)])),
        (">2\r\n+message\r\n+hi\r\n", .push([.simpleString("message"), .simpleString("hi")])),
        ("|1\r\n+ttl\r\n:3\r\n+value\r\n", .simpleString("value")),
        ("*2\r\n*1\r\n$2\r\nab\r\n*0\r\n", .array([.array([.bulkString(ByteBuffer(string: "ab"))]), .array([])])),
    ]

    @Test func decodesEveryReplyTypeUnderAnySplit() throws {
        // The verifier feeds the bytes whole, byte by byte, and merged with the other cases.
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: Self.cases.map { (ByteBuffer(string: $0.0), [$0.1]) },
            decoderFactory: { RESPDecoder() })
    }

    @Test(arguments: [
        "?oops\r\n",                // unknown type byte
        ":12a\r\n",                 // not an integer
        "$3\r\nabcd\r\n",           // bulk longer than its length
        "$-5\r\n",                  // negative length
        "#x\r\n",                   // boolean neither t nor f
        "+OK\rX",                   // CR without LF
        "*-2\r\n",                  // negative count
        "_x\r\n",                   // null with payload
        ":-\r\n",                   // a sign without digits
        ":9223372036854775808\r\n", // beyond Int64
    ])
    func rejectsMalformedInput(_ input: String) {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: input)
        #expect(throws: RESPDecodingError.self) { try decoder.decode(buffer: &buffer) }
    }

    @Test func boundsBulkLengthDepthAndLineLength() {
        var limits = RESPLimits()
        limits.maximumBulkLength = 10
        limits.maximumDepth = 3
        limits.maximumLineLength = 16
        for input in ["$11\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "+" + String(repeating: "a", count: 40)] {
            var decoder = RESPDecoder(limits: limits)
            var buffer = ByteBuffer(string: input)
            #expect(throws: RESPDecodingError.self) { try decoder.decode(buffer: &buffer) }
        }
    }

    @Test func waitsForMoreBytesWithoutConsuming() throws {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: "*2\r\n$5\r\nhel")
        #expect(try decoder.decode(buffer: &buffer) == nil)
        #expect(buffer.readableBytes == 11)
    }

    @Test func encodesCommandsAsBulkStringArrays() {
        let buffer = RESPCommand("SET", "key", 42).encoded
        #expect(String(buffer: buffer) == "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$2\r\n42\r\n")
    }

    @Test func parsesRedisURLs() throws {
        let full = try RedisConfiguration(url: "redis://user:p%40ss@example.org:6380/2")
        #expect(full.host == "example.org")
        #expect(full.port == 6380)
        #expect(full.username == "user")
        #expect(full.password == "p@ss")
        #expect(full.database == 2)
        let passwordOnly = try RedisConfiguration(url: "redis://:secret@127.0.0.1")
        #expect(passwordOnly.password == "secret" && passwordOnly.username == nil && passwordOnly.port == 6379)
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "http://x") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://x:99999") }
    }
}

@Suite struct RESPValueTests {
    @Test func readsStreamEntriesFromRESP2AndRESP3Replies() {
        let entry = RESPValue.array([.bulkString(ByteBuffer(string: "1-0")), .array([.bulkString(ByteBuffer(string: "f")), .bulkString(ByteBuffer(string: "v"))])])
        let resp2 = RESPValue.array([.array([.bulkString(ByteBuffer(string: "key")), .array([entry])])])
        let resp3 = RESPValue.map([.bulkString(ByteBuffer(string: "key")): .array([entry])])
        #expect(resp2.firstStreamEntries == [entry])
        #expect(resp3.firstStreamEntries == [entry])
        #expect(RESPValue.null.firstStreamEntries.isEmpty)
        #expect(entry.array?[1].fieldDictionary == ["f": "v"])
    }
}

@Suite struct RESPFrameScannerTests {
    @Test func findsEachFrameWholeOrFedByteByByte() throws {
        for (text, _) in RESPDecoderTests.cases {
            let bytes = Array(text.utf8)
            var whole = RESPFrameScanner()
            #expect(try whole.frameLength(in: ByteBuffer(bytes: bytes + Array("+next\r\n".utf8))) == bytes.count, "\(text)")
            // Fed one byte at a time, it reports the frame exactly when its last byte arrives.
            var incremental = RESPFrameScanner()
            var buffer = ByteBuffer()
            for (index, byte) in bytes.enumerated() {
                buffer.writeInteger(byte)
                let length = try incremental.frameLength(in: buffer)
                #expect(length == (index == bytes.count - 1 ? bytes.count : nil), "\(text) at byte \(index)")
            }
        }
    }

    @Test func boundsWhatItScans() {
        var limits = RESPLimits()
        limits.maximumDepth = 2
        limits.maximumBulkLength = 4
        // The last one was found by the fuzzer: an element that is an empty line.
        for input in ["*1\r\n*1\r\n*1\r\n:1\r\n", "$5\r\n", "?\r\n", "*1\r\n\r\n"] {
            var scanner = RESPFrameScanner(limits: limits)
            #expect(throws: RESPDecodingError.self) { try scanner.frameLength(in: ByteBuffer(string: input)) }
        }
    }
}
