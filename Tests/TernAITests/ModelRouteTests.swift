import Foundation
import Testing
import TernAI
import TernTestSupport

/// Deployments in order of preference, against `tern mock-llm` (and an address where nothing
/// listens): fallback before the first piece, circuits that open and half-open.
@Suite struct ModelRouteTests {
    static let wholeAnswer = "Mock answer token 1 token 2 token 3 token 4 token 5"
    /// A worker's upstream client: a refused connection fails at once. Lives as long as the tests.
    static let httpClient = OpenAIProvider.httpClient(connections: 8)

    func target(_ name: String, baseURL: String = TestServices.llmURL, model: String = "mock", threshold: Int = 5) -> ModelRoute.Target {
        var configuration = OpenAIProvider.Configuration(baseURL: baseURL, model: model)
        configuration.maximumAttempts = 1
        configuration.firstTokenTimeout = .seconds(5)
        return ModelRoute.Target(name: name, provider: OpenAIProvider(configuration: configuration, httpClient: Self.httpClient), breaker: CircuitBreaker(threshold: threshold, openDuration: .seconds(60)))
    }

    func answer(_ route: ModelRoute) async -> (text: String, error: (any Error)?) {
        var text = ""
        do {
            for try await parts in route.streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: GenerationOptions(maxTokens: 6)) {
                for case .text(let piece) in parts { text += piece }
            }
            return (text, nil)
        } catch {
            return (text, error)
        }
    }

    @Test func aFailingFirstDeploymentFallsBackToTheNext() async throws {
        let down = target("down", baseURL: "http://127.0.0.1:1/v1", threshold: 2)
        let failing = target("failing", model: "mock:status=503,id=\(UUID().uuidString)", threshold: 2)
        let route = ModelRoute(model: "m", targets: [down, failing, target("up")])
        let first = await answer(route)
        #expect(first.error == nil)
        #expect(first.text == Self.wholeAnswer)
        // Two failures in a row open a circuit: then the call goes straight to the one that works.
        _ = await answer(route)
        #expect(down.breaker.isOpen && failing.breaker.isOpen)
        #expect(await answer(route).text == Self.wholeAnswer)
    }

    @Test func aFailureAfterTheFirstPieceDoesNotFallBack() async throws {
        let route = ModelRoute(model: "m", targets: [target("cut", model: "mock:disconnect,after=4"), target("up")])
        let result = await answer(route)
        #expect((result.error as? ProviderError)?.code == .truncated)
        #expect(Self.wholeAnswer.hasPrefix(result.text) && result.text != Self.wholeAnswer)
    }

    @Test func aRefusalIsNotAFailureOfTheDeployment() async throws {
        let refusing = target("refusing", model: "mock:status=400", threshold: 1)
        let result = await answer(ModelRoute(model: "m", targets: [refusing, target("up")]))
        #expect((result.error as? ProviderError)?.code == .upstreamStatus(400))
        #expect(!refusing.breaker.isOpen)
    }

    @Test func withEveryCircuitOpenTheLastDeploymentIsStillTried() async throws {
        let down = target("down", baseURL: "http://127.0.0.1:1/v1", threshold: 1)
        let flaky = target("flaky", model: "mock:status=503,times=1,id=\(UUID().uuidString)", threshold: 1)
        let route = ModelRoute(model: "m", targets: [down, flaky])
        let first = (await answer(route).error as? ProviderError)?.code
        #expect(first == .upstreamStatus(503))
        #expect(down.breaker.isOpen && flaky.breaker.isOpen)
        // Both circuits open: the last deployment is tried anyway, and it has recovered.
        #expect(await answer(route).text == Self.wholeAnswer)
        #expect(!flaky.breaker.isOpen && down.breaker.isOpen)
    }

    @Test func aCircuitHalfOpensForOneProbe() {
        let breaker = CircuitBreaker(threshold: 2, openDuration: .seconds(10))
        let start = ContinuousClock.now
        #expect(breaker.acquire(now: start))
        breaker.failed(now: start)
        breaker.failed(now: start)
        #expect(!breaker.acquire(now: start + .seconds(9)))
        #expect(breaker.acquire(now: start + .seconds(10)))  // the probe
        #expect(!breaker.acquire(now: start + .seconds(10)))  // one at a time
        breaker.failed(now: start + .seconds(11))
        #expect(!breaker.acquire(now: start + .seconds(20)))  // open again
        #expect(breaker.acquire(now: start + .seconds(21)))
        breaker.succeeded()
        #expect(breaker.acquire() && breaker.acquire())  // closed
    }

    @Test func embeddingsFallBackToo() async throws {
        let route = ModelRoute(model: "e", targets: [target("down", baseURL: "http://127.0.0.1:1/v1"), target("up")])
        #expect(try await route.embed(["a", "b"]).vectors.count == 2)
    }
}

@Suite struct ModelCatalogueTests {
    func load(_ json: String, environment: [String: String] = [:]) throws -> ModelCatalogue {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("models-\(UUID().uuidString).json")
        try Data(json.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try ModelCatalogue.load(contentsOf: file, environment: environment)
    }

    @Test func readsModelsDeploymentsAndKeysFromTheEnvironment() throws {
        let catalogue = try load("""
            {"chat": [{"name": "chat", "context_window": 2048, "deployments": [
                {"name": "local", "base_url": "http://127.0.0.1:7081/v1", "model": "smollm2", "slots": 4},
                {"name": "cloud", "base_url": "https://api.example.com/v1", "api_key_env": "CLOUD_KEY", "slots": 16, "rpm": 600}]}],
             "embedding": [{"name": "embed", "deployments": [{"base_url": "http://127.0.0.1:7082/v1"}]}]}
            """, environment: ["CLOUD_KEY": "secret"])
        let chat = try #require(catalogue.chat.first)
        #expect(chat.contextWindow == 2048)
        #expect(chat.deployments.map(\.name) == ["local", "cloud"])
        #expect(chat.deployments[1].apiKey == "secret" && chat.deployments[1].upstreamModel == "chat")
        #expect(chat.slots == 4 && chat.requestsPerMinute == 600)
        #expect(catalogue.embedding.first?.deployments.first?.slots == 4)
    }

    @Test func refusesWhatCannotWork() {
        #expect(throws: ModelCatalogueError.self) { try load(#"{"chat": []}"#) }
        #expect(throws: ModelCatalogueError.self) {
            try load(#"{"chat": [{"name": "a", "deployments": [{"base_url": "http://x/v1", "api_key_env": "MISSING"}]}]}"#)
        }
        #expect(throws: ModelCatalogueError.self) { try load(#"{"chat": [{"name": "a", "deployments": [{"base_url": "ftp://x"}]}]}"#) }
        #expect(throws: ModelCatalogueError.self) { try load(#"{"chat": [{"name": "a", "deployments": []}]}"#) }
        #expect(throws: ModelCatalogueError.self) { try load("not json") }
    }
}

@Suite struct PromptFittingTests {
    /// A message of `words` words (five bytes each: an estimate of 1.25 tokens a word).
    func message(_ role: String, words: Int) -> ChatMessage { ChatMessage(role: role, content: String(repeating: "word ", count: words)) }

    @Test func aShortConversationIsLeftAloneWithoutAskingTheTokenizer() async {
        let messages = [message("system", words: 10), message("user", words: 10)]
        let fitted = await PromptFitting.fit(messages, window: 2048, reserve: 256) { _ in
            Issue.record("the tokenizer was asked")
            return nil
        }
        #expect(fitted == messages)
    }

    @Test func theOldestTurnsGoFirstAndTheSystemPromptStays() async {
        // Each message counts 100 tokens (+4): system, then five turns.
        let messages = [message("system", words: 40)] + (0..<5).map { message($0 % 2 == 0 ? "user" : "assistant", words: 40 + $0) }
        let fitted = await PromptFitting.fit(messages, window: 400 + 64, reserve: 64) { texts in texts.map { _ in 100 } }
        // 400 tokens of budget: the system message and the newest three (4 × 104 = 416 > 400: three).
        #expect(fitted == [messages[0], messages[4], messages[5]])
    }

    @Test func aNewestMessageThatCannotFitIsRefused() async {
        let fitted = await PromptFitting.fit([message("user", words: 40)], window: 100, reserve: 50) { _ in [500] }
        #expect(fitted == nil)
    }

    @Test func withoutATokenizerTheEstimateIsCautious() async {
        // 3 bytes a token without a tokenizer: 3000 bytes count 1004 tokens.
        let long = ChatMessage(role: "user", content: String(repeating: "x", count: 3000))
        #expect(await PromptFitting.fit([long], window: 1110, reserve: 100) { _ in nil } == [long])
        #expect(await PromptFitting.fit([long], window: 1000, reserve: 100) { _ in nil } == nil)
    }
}
