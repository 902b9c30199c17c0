import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TernAI
import TernTestSupport

/// The faults `tern mock-llm` injects (asked for in the model name), as the provider reports
/// them, and the provider's transparent retries while nothing has been streamed.
@Suite struct MockFaultTests {
    /// Streams one request for `model` with up to `attempts` calls; returns the text pieces before
    /// the end and how it ended.
    func stream(_ model: String, attempts: Int = 1) async -> (pieces: [String], error: (any Error)?) {
        var configuration = OpenAIProvider.Configuration(baseURL: TestServices.llmURL, model: model)
        configuration.maximumAttempts = attempts
        configuration.retryBaseDelay = .milliseconds(20)
        let provider = OpenAIProvider(configuration: configuration)
        var pieces: [String] = []
        do {
            for try await part in provider.streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: GenerationOptions(maxTokens: 6)) {
                if case .text(let text) = part { pieces.append(text) }
            }
            return (pieces, nil)
        } catch {
            return (pieces, error)
        }
    }

    func code(_ error: (any Error)?) -> ProviderError.Code? { (error as? ProviderError)?.code }

    @Test func statusCodesFailOnlyTheirFirstRequests() async throws {
        let model = "mock:status=429,retry-after=1,times=2,id=\(UUID().uuidString)"
        #expect(code(await stream(model).error) == .upstreamStatus(429))
        #expect(code(await stream(model).error) == .upstreamStatus(429))
        let third = await stream(model)
        #expect(third.error == nil)
        #expect(third.pieces.joined() == "Mock answer token 1 token 2 token 3 token 4 token 5")
        #expect(code(await stream("mock:status=503").error) == .upstreamStatus(503))
    }

    @Test func aDisconnectMidStreamIsATruncatedAnswer() async throws {
        let result = await stream("mock:disconnect,after=2")
        #expect(["Mock answer", " token 1"].starts(with: result.pieces))
        #expect(code(result.error) == .truncated)
    }

    static let wholeAnswer = "Mock answer token 1 token 2 token 3 token 4 token 5"

    @Test func throttlingIsRetriedAfterRetryAfterWhileNothingWasStreamed() async throws {
        let started = ContinuousClock.now
        let result = await stream("mock:status=429,retry-after=1,times=2,id=\(UUID().uuidString)", attempts: 3)
        #expect(result.error == nil)
        #expect(result.pieces.joined() == Self.wholeAnswer)
        #expect(ContinuousClock.now - started >= .seconds(2))  // it waited as asked, twice
    }

    @Test func aStreamCutBeforeItsFirstPieceIsRetriedOneCutLaterIsNot() async throws {
        let retried = await stream("mock:disconnect,after=0,times=1,id=\(UUID().uuidString)", attempts: 3)
        #expect(retried.error == nil)
        #expect(retried.pieces.joined() == Self.wholeAnswer)
        // After a piece was streamed, a retry would repeat it: the call fails instead.
        // (The mock's last writes before it disconnects may be lost: the client has a prefix.)
        let cut = await stream("mock:disconnect,after=2", attempts: 3)
        #expect(!cut.pieces.isEmpty && ["Mock answer", " token 1"].starts(with: cut.pieces))
        #expect(code(cut.error) == .truncated)
    }

    @Test func retriesStopAfterTheLastAttempt() async throws {
        #expect(code(await stream("mock:status=503", attempts: 3).error) == .upstreamStatus(503))
        #expect(code(await stream("mock:status=400", attempts: 3).error) == .upstreamStatus(400))
    }

    @Test func malformedEventsAreReported() async throws {
        let result = await stream("mock:malformed,after=2")
        #expect(result.pieces == ["Mock answer", " token 1"])
        #expect(code(result.error) == .malformedResponse)
    }

    @Test(.timeLimit(.minutes(1))) func aHangingStreamEndsWhenItsReaderStops() async throws {
        let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: "mock:hang,after=1"))
        let (firstPiece, received) = AsyncStream.makeStream(of: String.self)
        let reader = Task {
            for try await part in provider.streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: .init()) {
                if case .text(let text) = part { received.yield(text) }
            }
        }
        // The first piece comes; then the upstream hangs until the reader gives up.
        var pieces = firstPiece.makeAsyncIterator()
        #expect(await pieces.next() == "Mock answer")
        // Stopping ends the stream at once (and aborts the upstream request), hung or not.
        reader.cancel()
        try await reader.value
    }

    @Test func aHungUpstreamTimesOutAndIsRetriedOnlyBeforeItsFirstPiece() async throws {
        let client = OpenAIProvider.httpClient(connections: 4, gapTimeout: .seconds(1))
        func stream(_ model: String) async -> (pieces: [String], error: (any Error)?) {
            var configuration = OpenAIProvider.Configuration(baseURL: TestServices.llmURL, model: model)
            configuration.retryBaseDelay = .milliseconds(20)
            var pieces: [String] = []
            do {
                for try await part in OpenAIProvider(configuration: configuration, httpClient: client)
                    .streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: GenerationOptions(maxTokens: 6)) {
                    if case .text(let text) = part { pieces.append(text) }
                }
                return (pieces, nil)
            } catch {
                return (pieces, error)
            }
        }
        let retried = await stream("mock:hang,after=0,times=1,id=\(UUID().uuidString)")
        let cut = await stream("mock:hang,after=2")
        try await client.shutdown()
        #expect(retried.error == nil)
        #expect(retried.pieces.joined() == Self.wholeAnswer)
        #expect(cut.pieces == ["Mock answer", " token 1"])
        #expect(code(cut.error) == .truncated)
    }
}
