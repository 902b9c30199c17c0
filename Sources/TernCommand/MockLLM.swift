import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TernAPI
import TernTimers

/// A fast, deterministic OpenAI-compatible upstream for tests and benchmarks. The answer to any
/// prompt is "Mock answer token 1 token 2 ...": `--tokens` pieces (or `max_tokens`, if smaller),
/// with `--delay-ms` between pieces. `GET /stats` reports what it saw (requests in flight now and
/// at most, when each chat request arrived, streams whose client left before the end, the
/// connections chat requests came on, embedding requests and their inputs); `POST /stats/reset`
/// starts the count afresh.
struct MockLLM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mock-llm", abstract: "Run a fake OpenAI-compatible model server.")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 7090
    @Option(help: "Pieces in each answer.") var tokens = 16
    @Option(name: .customLong("delay-ms"), help: "Milliseconds between pieces.") var delayMilliseconds = 0

    func run() async throws {
        let logger = Environment.logger("tern.mock-llm")
        let router = Router(context: MockRequestContext.self)
        let tokens = self.tokens
        let delay = Duration.milliseconds(delayMilliseconds)
        let stats = RequestStats()
        let faults = FaultCounts()
        router.get("/health") { _, _ in "ok" }
        router.get("/stats") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try stats.json())))
        }
        router.post("/stats/reset") { _, _ in
            stats.reset()
            return "ok"
        }
        router.get("/v1/models") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: #"{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"tern"}]}"#)))
        }
        router.post("/v1/chat/completions") { request, context -> Response in
            stats.begin()
            var ended = false
            defer { if !ended { stats.end() } }
            let body = try await request.body.collect(upTo: 4 << 20)
            guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
                return Response(status: .badRequest, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"message":"invalid JSON","type":"invalid_request_error"}}"#)))
            }
            let model = (object["model"] as? String) ?? "mock"
            stats.connected(model: model, client: context.client)
            let fault = MockFault(model: model)
            let length = fault.tokens ?? tokens
            let count = min(length, (object["max_tokens"] as? Int) ?? length)
            if let status = fault.status, faults.shouldFail(model, times: fault.times) {
                var headers: HTTPFields = [.contentType: "application/json"]
                if let seconds = fault.retryAfter { headers[.retryAfter] = String(seconds) }
                return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(
                    string: #"{"error":{"message":"injected fault","type":"server_error","code":"mock_fault"}}"#)))
            }
            let pieces = Self.answer(count: count)
            let promptTokens = ((object["messages"] as? [[String: Any]]) ?? []).reduce(0) { $0 + (($1["content"] as? String)?.split(separator: " ").count ?? 0) }
            let finish = count < length ? "length" : "stop"
            let format = CompletionFormat(id: "chatcmpl-mock", model: model, created: 0)
            guard object["stream"] as? Bool == true else {
                let completion = format.completion(answer: pieces.joined(), finishReason: finish, prompt: promptTokens, completion: count, citations: nil)
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(completion))))
            }
            ended = true  // the stream ends the request when its last byte is written
            let includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true
            let gap = fault.slowMilliseconds.map { Duration.milliseconds($0) } ?? delay
            // `times` limits these faults too: the first N requests naming the model get them.
            let strikeAt = fault.mode != nil && faults.shouldFail(model, times: fault.times) ? fault.after : -1
            return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: .init { writer in
                var inFlight = true
                defer { if inFlight { stats.end() } }
                // Events go out together until the next pause (a gap between pieces, a fault):
                // without a gap the whole answer is one write, as a real server's buffer would send it.
                var batch = ByteBuffer()
                var sent = 0  // pieces written
                do {
                    for (index, piece) in pieces.enumerated() {
                        if index == strikeAt || gap > .zero, batch.readableBytes > 0 {
                            try await writer.write(batch)
                            batch.clear()
                            sent = index
                        }
                        if index == strikeAt {
                            switch fault.mode {
                            case "hang": try await EventLoopTimer.sleep(for: .seconds(3600))  // until the client gives up
                            case "disconnect": throw MockFault.Disconnect()  // closes the connection mid-body
                            case "malformed": batch.writeString("data: {\"choices\": [unterminated\n\n")
                            default: break
                            }
                        }
                        if gap > .zero { try await EventLoopTimer.sleep(for: gap) }
                        batch.writeImmutableBuffer(format.tokenEvent(piece))
                    }
                    batch.writeImmutableBuffer(try format.sse(format.chunk(delta: [:], finishReason: finish)))
                    if includeUsage { batch.writeImmutableBuffer(try format.sse(format.usageChunk(prompt: promptTokens, completion: count))) }
                    batch.writeString("data: [DONE]\n\n")
                    // The answer is done once its last event goes out: its client may send its
                    // next request on seeing it, before this handler has returned.
                    inFlight = false
                    stats.end()
                    try await writer.write(batch)
                    sent = pieces.count
                    try await writer.finish(nil)
                } catch let error where !(error is MockFault.Disconnect) {
                    // The client went away (or the server is stopping) before the end.
                    stats.aborted(model: model, afterPieces: sent)
                    throw error
                }
            })
        }
        router.post("/v1/embeddings") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 4 << 20)
            let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            guard let input = object?["input"], let texts = (input as? [String]) ?? (input as? String).map({ [$0] }) else {
                return Response(status: .badRequest, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"message":"input must be a string or a list of strings","type":"invalid_request_error"}}"#)))
            }
            stats.embedded(model: (object?["model"] as? String) ?? "mock", inputs: texts.count)
            let data = texts.enumerated().map { ["object": "embedding", "index": $0.offset, "embedding": Self.embedding($0.element)] as [String: Any] }
            let promptTokens = texts.reduce(0) { $0 + $1.split(separator: " ").count }
            let answer: [String: Any] = [
                "object": "list", "data": data, "model": (object?["model"] as? String) ?? "mock",
                "usage": ["prompt_tokens": promptTokens, "total_tokens": promptTokens],
            ]
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: answer))))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
        try await runUntilSignalled([app], logger: logger)
    }

    /// A deterministic unit vector of 384 dimensions for a text (FNV-1a seeds a xorshift).
    static func embedding(_ text: String) -> [Double] {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
        if state == 0 { state = 1 }
        let values = (0..<384).map { _ -> Double in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Double(state % 2_000_001) / 1_000_000 - 1
        }
        let norm = max(values.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-9)
        return values.map { ($0 / norm * 1e6).rounded() / 1e6 }
    }

    static func answer(count: Int) -> [String] {
        (0..<count).map { $0 == 0 ? "Mock answer" : " token \($0)" }
    }
}

/// A fault the mock injects, asked for in the request's model name (the worker sends its
/// deployment's upstream model name, so a test picks the fault by configuring it):
/// `mock:status=429,retry-after=1,times=2,id=X` answers 429 (with `Retry-After: 1`) to the first
/// two requests naming exactly that model, then answers normally (`times` limits every fault); `mock:hang,after=3` stops
/// sending after 3 pieces (`after=0`: before the first); `mock:disconnect,after=3` drops the
/// connection there; `mock:malformed,after=3` sends an event that is not JSON there;
/// `mock:slow=200` waits 200 ms between pieces; `mock:tokens=500` answers with 500 pieces.
struct MockFault {
    struct Disconnect: Error {}

    var status: Int?
    var retryAfter: Int?
    var times: Int?
    /// hang, disconnect or malformed.
    var mode: String?
    /// The piece before which `mode` strikes.
    var after = 0
    var slowMilliseconds: Int?
    /// Pieces in the answer, instead of `--tokens`.
    var tokens: Int?

    init(model: String) {
        guard model.hasPrefix("mock:") else { return }
        for option in model.dropFirst("mock:".count).split(separator: ",") {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let value = parts.count == 2 ? Int(parts[1]) : nil
            switch parts[0] {
            case "status": status = value
            case "retry-after": retryAfter = value
            case "times": times = value
            case "after": after = value ?? 0
            case "slow": slowMilliseconds = value
            case "tokens": tokens = value.map { max(1, min($0, 100_000)) }
            case "hang", "disconnect", "malformed": mode = parts[0]
            default: break
            }
        }
        if mode != nil, after < 0 { after = 0 }
        if mode == nil { after = -1 }
    }
}

/// How many requests each faulty model name has failed, for `times`.
final class FaultCounts: Sendable {
    private let counts = NIOLockedValueBox<[String: Int]>([:])

    /// Whether this request fails: always without `times`, else only the first `times`.
    func shouldFail(_ model: String, times: Int?) -> Bool {
        guard let times else { return true }
        return counts.withLockedValue { counts in
            counts[model, default: 0] += 1
            return counts[model]! <= times
        }
    }
}

/// A request's context in the mock: it knows the client's address, so the mock can tell
/// which requests came on the same connection.
struct MockRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The client's address and port: one per connection.
    let client: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        client = source.channel.remoteAddress?.description ?? "unknown"
    }
}

/// What the mock has seen, for tests of limits: requests in flight, the most at once, arrivals.
final class RequestStats: Sendable {
    private struct State {
        var inFlight = 0
        var maximumInFlight = 0
        var arrivals: [Int64] = []
        /// Streams whose client left early: the model name, when (ms since 1970), pieces sent.
        var aborts: [(model: String, at: Int64, pieces: Int)] = []
        /// Embedding requests and their inputs, by model name.
        var embeddingRequests: [String: Int] = [:]
        var embeddingInputs: [String: Int] = [:]
        /// The connections (client address and port) chat requests came on, by model name.
        var chatConnections: [String: Set<String>] = [:]
    }
    private let state = NIOLockedValueBox(State())

    func begin() {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        state.withLockedValue { state in
            state.inFlight += 1
            state.maximumInFlight = max(state.maximumInFlight, state.inFlight)
            if state.arrivals.count < 1_000_000 { state.arrivals.append(now) }
        }
    }

    func end() { state.withLockedValue { $0.inFlight -= 1 } }

    func embedded(model: String, inputs: Int) {
        state.withLockedValue { state in
            guard state.embeddingRequests[model] != nil || state.embeddingRequests.count < 10_000 else { return }
            state.embeddingRequests[model, default: 0] += 1
            state.embeddingInputs[model, default: 0] += inputs
        }
    }

    func connected(model: String, client: String) {
        state.withLockedValue { state in
            guard state.chatConnections[model] != nil || state.chatConnections.count < 10_000 else { return }
            state.chatConnections[model, default: []].insert(client)
        }
    }

    /// A stream ended early because its client closed the connection.
    func aborted(model: String, afterPieces pieces: Int) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        state.withLockedValue { state in
            if state.aborts.count < 10_000 { state.aborts.append((model, now, pieces)) }
        }
    }

    func reset() {
        state.withLockedValue { state in
            state.maximumInFlight = state.inFlight
            state.arrivals = []
            state.aborts = []
            state.embeddingRequests = [:]
            state.embeddingInputs = [:]
            state.chatConnections = [:]
        }
    }

    func json() throws -> Data {
        let snapshot = state.withLockedValue { $0 }
        return try JSONSerialization.data(withJSONObject: [
            "in_flight": snapshot.inFlight, "max_in_flight": snapshot.maximumInFlight, "arrivals_ms": snapshot.arrivals,
            "embedding_requests": snapshot.embeddingRequests, "embedding_inputs": snapshot.embeddingInputs,
            "chat_connections": snapshot.chatConnections.mapValues(\.count),
            "aborts": snapshot.aborts.map { ["model": $0.model, "at_ms": $0.at, "pieces_sent": $0.pieces] as [String: Any] },
        ])
    }
}
