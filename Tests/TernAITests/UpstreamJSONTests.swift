import Foundation
import Testing
@testable import TernAI

/// The JSON of a model call, written and read by hand: the same as Codable's.
@Suite struct UpstreamJSONTests {
    static let messages = [
        ChatMessage(role: "system", content: "Be brief."),
        ChatMessage(role: "user", content: #"a "quoted" \ word, a/b, ünïcödé 🚀, line\#nbreak, </script>, \#u{1}"#),
    ]

    /// A job's payload, written by hand, is the JSON JSONEncoder writes, and reads back as the
    /// same job (as JSONEncoder's does).
    @Test(arguments: [
        ChatJob(userID: UUID(), conversationID: UUID(), model: "m", messages: UpstreamJSONTests.messages, options: GenerationOptions()),
        ChatJob(
            userID: UUID(), conversationID: UUID(), model: "model/ü", messages: UpstreamJSONTests.messages,
            options: GenerationOptions(maxTokens: 64, temperature: 0.7, topP: 0.95, stop: ["\n\n", "END"], seed: 9_223_372_036_854_775_807),
            tokenBuckets: ["tern:tokens:{u}:key:k": 1000, "tern:tokens:{u}:user": 20_000], reservedTokens: 900, documents: [UUID(), UUID()]),
        ChatJob(userID: UUID(), conversationID: UUID(), model: "m", messages: [], options: GenerationOptions(temperature: 0), documents: []),
    ])
    func aPayloadReadsBackAsTheJob(job: ChatJob) throws {
        let encoded = try JSONEncoder().encode(job)
        let written = try JSONSerialization.jsonObject(with: Data(job.payload.utf8)) as? NSDictionary
        #expect(written == (try JSONSerialization.jsonObject(with: encoded) as? NSDictionary))
        #expect(try ChatJob(payload: job.payload) == job)
        #expect(try ChatJob(payload: String(decoding: encoded, as: UTF8.self)) == job)
    }

    @Test func aPayloadThatIsNotAJobIsRefused() {
        for payload in ["", "[]", #"{"model":"m"}"#, #"{"userID":"x","conversationID":"y","model":"m","messages":[],"options":{}}"#] {
            #expect(throws: (any Error).self) { try ChatJob(payload: payload) }
        }
    }

    /// The model call's body is the JSON Codable would write: unset options left out.
    @Test(arguments: [GenerationOptions(), GenerationOptions(maxTokens: 8, temperature: 0.25, topP: 1, stop: ["a\"b"], seed: -3)])
    func theRequestBodyIsTheEncodedRequest(options: GenerationOptions) throws {
        let written = try JSONSerialization.jsonObject(with: Data(UpstreamChatRequest(model: "mock", messages: Self.messages, options: options).json.utf8))
        var expected: [String: Any] = [
            "model": "mock", "stream": true, "stream_options": ["include_usage": true],
            "messages": Self.messages.map { ["role": $0.role, "content": $0.content] },
        ]
        let encodedOptions = try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)) as? [String: Any] ?? [:]
        expected.merge(encodedOptions) { $1 }
        #expect((written as? NSDictionary) == (expected as NSDictionary))
    }

    @Test func aChunkIsReadForItsTextEndUsageAndError() throws {
        let piece = try #require(UpstreamChunk(json: #"{"id":"x","choices":[{"index":0,"delta":{"content":"Hi \"you\""},"finish_reason":null}],"usage":null}"#))
        #expect(piece.content == #"Hi "you""# && piece.finishReason == nil && piece.usage == nil && piece.error == nil)
        let last = try #require(UpstreamChunk(json: #"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":12,"completion_tokens":8}}"#))
        #expect(last.content == nil && last.finishReason == "length" && last.usage?.prompt_tokens == 12 && last.usage?.completion_tokens == 8)
        #expect(UpstreamChunk(json: #"{"choices":[],"usage":{"prompt_tokens":3}}"#)?.usage?.completion_tokens == nil)
        #expect(UpstreamChunk(json: #"{"error":{"message":"overloaded"}}"#)?.error == "overloaded")
        #expect(UpstreamChunk(json: #"{"error":{}}"#)?.error == "upstream error")
        for text in ["", "not json", "[]", #"{"choices":[1]}"#, #"{"choices":[{"delta":{"content":5}}]}"#, #"{"error":"boom"}"#] {
            #expect(UpstreamChunk(json: text) == nil, "\(text)")
        }
    }
}
