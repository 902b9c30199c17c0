import Foundation
import NIOCore
import Testing
@testable import TernAPI

@Suite struct CompletionFormatTests {
    /// The hand-written event of a piece holds the same JSON as the encoded chunk, whatever the
    /// text holds.
    @Test(arguments: [
        "Hello", "", " token 1", #"a "quoted" word and a \ backslash"#, "line\nbreak\ttab\rreturn", "\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
        "emoji 🚀, ünïcödé, 中文", "</script><script>alert(1)</script>", "a/b", "\u{2028}\u{2029}",
    ])
    func aPiecesEventIsTheChunkAsJSON(text: String) throws {
        let format = CompletionFormat(id: "chatcmpl-\"x\"\\", model: "model/ü", created: 1_796_000_000)
        let written = try Self.payload(format.tokenEvent(text))
        let encoded = try Self.payload(format.sse(format.chunk(delta: ["content": text])))
        #expect(written == encoded)
    }

    /// The JSON of one `data:` event.
    static func payload(_ event: ByteBuffer) throws -> NSDictionary {
        let text = String(buffer: event)
        #expect(text.hasPrefix("data: ") && text.hasSuffix("\n\n"))
        let json = Data(text.dropFirst("data: ".count).dropLast(2).utf8)
        return try #require(try JSONSerialization.jsonObject(with: json) as? NSDictionary)
    }
}
