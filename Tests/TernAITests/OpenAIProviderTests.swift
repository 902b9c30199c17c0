import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TernAI
import TernTestSupport

/// Against `tern mock-llm`, started by scripts/test.
@Suite struct OpenAIProviderTests {
    @Test func streamsTextPiecesAndUsage() async throws {
        let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: "mock"))
        var text = ""
        var finish: ChatStreamPart?
        for try await part in provider.streamChat(messages: [ChatMessage(role: "user", content: "hi there")], options: GenerationOptions(maxTokens: 4)) {
            switch part {
            case .text(let piece): text += piece
            case .finished: finish = part
            }
        }
        #expect(text == "Mock answer token 1 token 2 token 3")
        #expect(finish == .finished(reason: "length", promptTokens: 2, completionTokens: 4))
    }

    /// A connection whose answer was read to its end goes back to the pool: calls one after
    /// another share one connection instead of each paying for a new one.
    @Test func callsOneAfterAnotherShareAConnection() async throws {
        let client = OpenAIProvider.httpClient(connections: 4)
        let model = "reuse-\(UUID().uuidString)"
        let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: model), httpClient: client)
        var answers: [String] = []
        do {
            for _ in 1...5 {
                var text = ""
                for try await part in provider.streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: GenerationOptions(maxTokens: 3)) {
                    if case .text(let piece) = part { text += piece }
                }
                answers.append(text)
            }
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
        #expect(answers == Array(repeating: "Mock answer token 1 token 2", count: 5))
        // The mock counts the connections each model's requests came on.
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: String(TestServices.llmURL.dropLast("/v1".count)) + "/stats"), timeout: .seconds(30))
        let stats = try JSONSerialization.jsonObject(with: Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)) as? [String: Any]
        let connections = (stats?["chat_connections"] as? [String: Int])?[model]
        #expect(connections == 1)
    }

    @Test func reportsAnUnreachableUpstream() async throws {
        var configuration = OpenAIProvider.Configuration(baseURL: "http://127.0.0.1:1/v1", model: "mock")
        configuration.firstTokenTimeout = .seconds(2)
        let provider = OpenAIProvider(configuration: configuration)
        await #expect(throws: ProviderError.self) {
            for try await _ in provider.streamChat(messages: [ChatMessage(role: "user", content: "x")], options: .init()) {}
        }
    }

    @Test func chatEventsRoundTripThroughStreamFields() {
        let events: [ChatEvent] = [.started(attempt: 2), .token("a\nb"), .done(finishReason: "stop", promptTokens: 1, completionTokens: 2), .failed(code: "x", message: "y")]
        for event in events {
            let fields = Dictionary(uniqueKeysWithValues: event.fields.map { ($0.key, $0.value) })
            #expect(ChatEvent(fields: fields) == event)
        }
        #expect(ChatEvent(fields: ["type": "unknown"]) == nil)
    }
}
