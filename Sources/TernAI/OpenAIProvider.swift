import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import TernTimers

/// A model server that speaks OpenAI's chat completions API (llama.cpp's llama-server, vLLM,
/// OpenAI, the mock): streams a generation as text pieces.
public struct OpenAIProvider: Sendable {
    /// Where and how to reach the upstream.
    public struct Configuration: Sendable {
        /// Base URL including `/v1`, e.g. `http://127.0.0.1:8081/v1`.
        public var baseURL: String
        /// Bearer token, if the upstream needs one.
        public var apiKey: String?
        /// The model name the upstream expects.
        public var model: String
        /// Limit from sending the request to the first piece of the answer (connection, the
        /// model reading the prompt, the answer's head). Gaps between pieces are bounded by the
        /// HTTP client's read timeout (`httpClient(connections:gapTimeout:)`), connecting by its
        /// connect timeout.
        public var firstTokenTimeout: Duration = .seconds(60)
        /// Limit on one call from start to end.
        public var totalTimeout: Duration = .seconds(600)
        /// Calls per request, the first included, while nothing has been streamed (see `runRetrying`).
        public var maximumAttempts = 3
        /// Whether the upstream counts tokens at `/tokenize` beside `/v1` (llama.cpp's server):
        /// then long conversations are fitted to the context window with exact counts.
        public var tokenizer = false
        /// The first retry's wait before jitter; each further one doubles it.
        public var retryBaseDelay: Duration = .milliseconds(250)
        /// The longest wait before a retry, even when the upstream's `Retry-After` asks for more.
        public var maximumRetryDelay: Duration = .seconds(10)

        public init(baseURL: String, apiKey: String? = nil, model: String) {
            self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            self.apiKey = apiKey
            self.model = model
        }
    }

    public let configuration: Configuration
    let httpClient: HTTPClient

    public init(configuration: Configuration, httpClient: HTTPClient = .shared) {
        self.configuration = configuration
        self.httpClient = httpClient
    }

    /// An HTTP client for upstream calls that keeps up to `connections` connections to each
    /// host: one per call a worker runs at once, so calls never queue inside the client (the
    /// shared client allows 8). A connection that cannot be made fails its call at once. A
    /// call whose upstream sends nothing for `gapTimeout` (before
    /// the answer's head, or between pieces) fails: a hung model server cannot hold a job. So
    /// does a connection attempt that takes longer than `connectTimeout`.
    /// Shut it down when the process ends.
    public static func httpClient(connections: Int, gapTimeout: TimeAmount = .seconds(60), connectTimeout: TimeAmount = .seconds(10)) -> HTTPClient {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.timeout.read = gapTimeout
        configuration.timeout.connect = connectTimeout
        configuration.connectionPool = .init(idleTimeout: .seconds(600), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, connections))
        // A refused or failed connection fails the call at once: the provider's own retries
        // (with backoff) and the route's fallback decide what comes next, instead of the
        // client quietly trying again until the call's deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Streams a chat completion. Throws `ProviderError` for upstream failures.
    public func streamChat(messages: [ChatMessage], options: GenerationOptions) -> AsyncThrowingStream<ChatStreamPart, any Error> {
        AsyncThrowingStream { continuation in
            // Unstructured because AsyncThrowingStream needs a producer; it is cancelled when the
            // consumer stops iterating (onTermination), which aborts the HTTP request.
            let task = Task {
                do {
                    try await chat(messages: messages, options: options) { continuation.yield($0) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// A chat completion whose pieces go to `yield` as they arrive, in the caller's task (no
    /// stream between: `ModelRoute` relays them to its own stream).
    func chat(messages: [ChatMessage], options: GenerationOptions, yield: @escaping @Sendable (ChatStreamPart) -> Void) async throws {
        try await retrying(streaming: true) { progress in
            try await run(messages: messages, options: options) { part in
                progress.pieceArrived()
                yield(part)
            }
        }
    }

    /// Runs a call within its timeouts, and again after a failure that may pass (unreachable,
    /// timed out, 429, 5xx, a stream cut short) as long as nothing was streamed yet: then the
    /// client sees one whole answer. Waits with exponential backoff and jitter, or as long as
    /// the upstream's `Retry-After` asks (up to `maximumRetryDelay`). Once a piece was
    /// streamed, a failure ends the call: a retry could not continue the answer without
    /// repeating or changing it.
    /// A `streaming` call must bring its first piece within the first-token timeout; any call
    /// must end within the total timeout.
    func retrying<Result: Sendable>(streaming: Bool, _ call: @escaping @Sendable (CallProgress) async throws -> Result) async throws -> Result {
        var attempt = 1
        while true {
            let progress = CallProgress(configuration: configuration, streaming: streaming)
            do {
                return try await progress.enforcingTimeouts { try await call(progress) }
            } catch let error as ProviderError where !progress.streamed && error.mayPassOnRetry && attempt < configuration.maximumAttempts {
                let backoff = configuration.retryBaseDelay * Double(1 << min(attempt - 1, 10)) * Double.random(in: 0.5...1.5)
                try await Task.sleep(for: min(error.retryAfter ?? backoff, configuration.maximumRetryDelay))
                attempt += 1
            } catch var error as ProviderError where progress.streamed {
                error.afterFirstPiece = true
                throw error
            }
        }
    }

    private func run(messages: [ChatMessage], options: GenerationOptions, yield: @Sendable (ChatStreamPart) -> Void) async throws {
        var request = HTTPClientRequest(url: configuration.baseURL + "/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let key = configuration.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(string: UpstreamChatRequest(model: configuration.model, messages: messages, options: options).json))

        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: TimeAmount(configuration.totalTimeout))
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw ProviderError(.unreachable, "upstream request failed: \(error)")
        }
        guard response.status == .ok else {
            let text = (try? await response.body.collect(upTo: 16 * 1024)).map { String(buffer: $0) } ?? ""
            throw ProviderError(status: response, body: text)
        }
        var parser = ServerSentEventsParser()
        var finishReason: String?
        var usage: UpstreamChunk.Usage?
        var sawDone = false
        var answer = response.body.makeAsyncIterator()
        do {
            reading: while let chunk = try await answer.next() {
                for event in try parser.feed(chunk.readableBytesView) {
                    if event.data == "[DONE]" {
                        sawDone = true
                        Self.drain(answer)
                        break reading
                    }
                    guard let decoded = UpstreamChunk(json: event.data) else {
                        throw ProviderError(.malformedResponse, "upstream sent an event that is not a completion chunk")
                    }
                    if let error = decoded.error { throw ProviderError(.upstreamError, error) }
                    if let text = decoded.content, !text.isEmpty { yield(.text(text)) }
                    if let reason = decoded.finishReason { finishReason = reason }
                    if let reported = decoded.usage { usage = reported }
                }
            }
        } catch let error as ProviderError {
            throw error
        } catch let error as ServerSentEventsError {
            throw ProviderError(.malformedResponse, "\(error)")
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw ProviderError(.truncated, "upstream stream broke: \(error)")
        }
        // Some upstreams end the body without "[DONE]" after the final chunk.
        guard sawDone || finishReason != nil else {
            throw ProviderError(.truncated, "upstream closed the stream before it finished")
        }
        yield(.finished(reason: finishReason ?? "stop", promptTokens: usage?.prompt_tokens, completionTokens: usage?.completion_tokens))
    }
}

extension OpenAIProvider {
    /// Reads what is left of a response body after the answer's end (`[DONE]`), off the way of
    /// the answer, so that its connection goes back to the pool: a body left unread closes the
    /// connection, and the next call would pay for a new one. Gives up, closing it after all,
    /// beyond 64 KiB or at the client's read timeout.
    static func drain(_ body: sending HTTPClientResponse.Body.AsyncIterator) {
        Task {
            var body = body
            var bytes = 0
            while bytes <= 64 << 10, let chunk = try? await body.next() { bytes += chunk.readableBytes }
        }
    }

    /// Largest embeddings answer read from the upstream.
    static let maximumEmbeddingsBytes = 64 << 20

    /// Embeds texts in one upstream request (`POST /embeddings`); the vectors come back in the
    /// order of `inputs`. Throws `ProviderError` for upstream failures.
    public func embed(_ inputs: [String]) async throws -> Embeddings {
        try await retrying(streaming: false) { _ in try await embedOnce(inputs) }
    }

    private func embedOnce(_ inputs: [String]) async throws -> Embeddings {
        var request = HTTPClientRequest(url: configuration.baseURL + "/embeddings")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = configuration.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(UpstreamEmbeddingRequest(model: configuration.model, input: inputs))))
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await httpClient.execute(request, timeout: TimeAmount(configuration.totalTimeout))
            body = try await response.body.collect(upTo: Self.maximumEmbeddingsBytes)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw ProviderError(.unreachable, "upstream request failed: \(error)")
        }
        guard response.status == .ok else {
            throw ProviderError(status: response, body: String(buffer: body))
        }
        guard let decoded = try? JSONDecoder().decode(UpstreamEmbeddings.self, from: Data(body.readableBytesView)) else {
            throw ProviderError(.malformedResponse, "upstream sent an answer that is not a list of embeddings")
        }
        let vectors = decoded.data.sorted { $0.index < $1.index }.map(\.embedding)
        guard vectors.count == inputs.count, decoded.data.map(\.index).sorted() == Array(0..<inputs.count),
              let dimensions = vectors.first?.count, dimensions > 0, vectors.allSatisfy({ $0.count == dimensions })
        else { throw ProviderError(.malformedResponse, "upstream sent \(vectors.count) embeddings of uneven size for \(inputs.count) inputs") }
        return Embeddings(vectors: vectors, promptTokens: decoded.usage?.prompt_tokens ?? 0)
    }
}

struct UpstreamEmbeddingRequest: Encodable {
    let model: String
    let input: [String]
    var encoding_format = "float"
}

struct UpstreamEmbeddings: Decodable {
    struct Item: Decodable {
        let index: Int
        let embedding: [Float]
    }
    struct Usage: Decodable { let prompt_tokens: Int? }
    let data: [Item]
    let usage: Usage?
}

/// The request body sent upstream.
struct UpstreamChatRequest {
    let model: String
    let messages: [ChatMessage]
    let options: GenerationOptions

    /// The body as JSON, written directly (`JSONText`): every model call sends one, on the way
    /// to the first token. Streaming, with the usage in the last chunk; unset options left out.
    var json: String {
        let members = [#""model":"# + JSONText.string(model), #""messages":"# + messages.json, #""stream":true,"stream_options":{"include_usage":true}"#]
        return "{" + (members + options.jsonMembers).joined(separator: ",") + "}"
    }
}

/// One streamed chunk from the upstream (only the fields Tern reads), read by hand
/// (`JSONReader`): every piece of every answer comes this way.
struct UpstreamChunk {
    struct Usage {
        let prompt_tokens: Int?
        let completion_tokens: Int?
    }
    /// The first choice's new text and why it ended.
    var content: String?
    var finishReason: String?
    var usage: Usage?
    /// An error the upstream sent in the stream (its message, if it gave one).
    var error: String?

    /// `nil` for text that is not a chunk: not JSON, or a field of the wrong type.
    init?(json text: String) {
        do {
            let chunk = try JSONObject(JSONReader.read(text))
            if let first = try chunk.optionalArray("choices", { element, index in try JSONObject(element, path: chunk.path("choices", index)) })?.first {
                content = try first.optionalObject("delta")?.optionalString("content")
                finishReason = try first.optionalString("finish_reason")
            }
            usage = try chunk.optionalObject("usage").map { usage in
                Usage(prompt_tokens: try usage.optionalInt("prompt_tokens"), completion_tokens: try usage.optionalInt("completion_tokens"))
            }
            error = try chunk.optionalObject("error").map { try $0.optionalString("message") ?? "upstream error" }
        } catch {
            return nil
        }
    }
}

/// A failed call to a model server.
public struct ProviderError: Error, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case unreachable
        case upstreamStatus(Int)
        case upstreamError
        case malformedResponse
        case truncated
        /// No first piece within the first-token timeout, or no end within the total timeout.
        case timedOut
        /// Every deployment of the model has an open circuit.
        case unavailable
    }
    public let code: Code
    /// Details for logs; may quote the upstream's answer, so it is not shown to clients.
    public let message: String
    /// How long the upstream asked to wait (its `Retry-After`), if it did.
    public var retryAfter: Duration?
    /// Whether the call had streamed part of its answer: then no retry or other deployment can
    /// continue it.
    public internal(set) var afterFirstPiece = false

    /// Whether the same call may succeed later: the upstream was unreachable, throttled,
    /// failing (5xx), or cut the stream short.
    var mayPassOnRetry: Bool {
        switch code {
        case .unreachable, .truncated, .timedOut, .unavailable: true
        case .upstreamStatus(let status): status == 429 || status >= 500
        case .upstreamError, .malformedResponse: false
        }
    }
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An answer other than 200, with its `Retry-After` (in seconds) if it has one.
    init(status response: HTTPClientResponse, body: String) {
        self.init(.upstreamStatus(Int(response.status.code)), "upstream answered \(response.status.code): \(body.prefix(300))")
        retryAfter = response.headers.first(name: "Retry-After").flatMap { Int($0) }.map { .seconds(max(0, $0)) }
    }
    public var description: String { message }

    /// What a client may be told.
    public var publicMessage: String {
        switch code {
        case .unreachable: "The model server could not be reached."
        case .upstreamStatus(let status): "The model server answered with HTTP status \(status)."
        case .upstreamError: "The model server reported an error."
        case .malformedResponse: "The model server sent an answer Tern could not read."
        case .truncated: "The model server stopped in the middle of the answer."
        case .timedOut: "The model server did not answer in time."
        case .unavailable: "The model is unavailable right now; try again shortly."
        }
    }
}

/// One call's progress against its first-token and total deadlines.
final class CallProgress: Sendable {
    private struct State {
        var streamed = false
        var deadline: ContinuousClock.Instant
    }
    private let state: NIOLockedValueBox<State>
    private let total: ContinuousClock.Instant
    private let firstTokenTimeout: Duration
    private let totalTimeout: Duration

    init(configuration: OpenAIProvider.Configuration, streaming: Bool) {
        let now = ContinuousClock.now
        total = now + configuration.totalTimeout
        firstTokenTimeout = configuration.firstTokenTimeout
        totalTimeout = configuration.totalTimeout
        state = NIOLockedValueBox(State(deadline: streaming ? min(now + configuration.firstTokenTimeout, total) : total))
    }

    /// Whether a piece of the answer has arrived.
    var streamed: Bool { state.withLockedValue(\.streamed) }

    /// The first piece moves the deadline from the first token's to the total's.
    func pieceArrived() {
        state.withLockedValue { state in
            guard !state.streamed else { return }
            state.streamed = true
            state.deadline = total
        }
    }

    /// Runs `call`; cancels it and throws `ProviderError(.timedOut)` when the deadline passes.
    func enforcingTimeouts<Result: Sendable>(_ call: @escaping @Sendable () async throws -> Result) async throws -> Result {
        try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask { try await call() }
            group.addTask {
                while true {
                    let deadline = self.state.withLockedValue { $0.deadline }
                    if ContinuousClock.now >= deadline {
                        throw deadline == self.total
                            ? ProviderError(.timedOut, "upstream did not finish within \(self.totalTimeout)")
                            : ProviderError(.timedOut, "upstream sent no answer within \(self.firstTokenTimeout)")
                    }
                    try await EventLoopTimer.sleep(until: deadline)
                }
            }
            defer { group.cancelAll() }
            // The call's result, or the watchdog's error (it never returns).
            guard let result = try await group.next(), let value = result else { throw CancellationError() }
            return value
        }
    }
}

extension OpenAIProvider {
    /// Counts each text's tokens with the upstream's tokenizer (llama.cpp's `POST /tokenize`,
    /// beside `/v1`), four requests at a time; `nil` if it has none (`tokenizer` is off) or does
    /// not answer within 5 seconds.
    public func countTokens(_ texts: [String]) async -> [Int]? {
        guard configuration.tokenizer, configuration.baseURL.hasSuffix("/v1") else { return nil }
        let url = String(configuration.baseURL.dropLast("/v1".count)) + "/tokenize"
        return await withTaskGroup(of: (Int, Int?).self) { group in
            var counts = [Int?](repeating: nil, count: texts.count)
            for (index, text) in texts.enumerated() {
                if index >= 4, let (done, count) = await group.next() { counts[done] = count }
                group.addTask {
                    var request = HTTPClientRequest(url: url)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    if let key = configuration.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
                    guard let body = try? JSONEncoder().encode(["content": text]) else { return (index, nil) }
                    request.body = .bytes(ByteBuffer(bytes: body))
                    guard let response = try? await httpClient.execute(request, timeout: .seconds(5)), response.status == .ok,
                          let answer = try? await response.body.collect(upTo: 16 << 20),
                          let decoded = try? JSONDecoder().decode(TokenizeAnswer.self, from: Data(answer.readableBytesView))
                    else { return (index, nil) }
                    return (index, decoded.tokens.count)
                }
            }
            for await (index, count) in group { counts[index] = count }
            return counts.contains(where: { $0 == nil }) ? nil : counts.map { $0! }
        }
    }
}

/// llama.cpp's `/tokenize` answer (token ids).
struct TokenizeAnswer: Decodable {
    let tokens: [Int]
}
