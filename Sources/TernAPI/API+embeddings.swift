import Foundation
import Hummingbird
import Logging
import TernAI
import TernQueue
import TernRedis
import TernStore

/// The body of `POST /v1/embeddings`, as OpenAI defines it.
struct EmbeddingRequest: JSONBody {
    let model: String
    /// `input`: a string or a list of strings (token arrays are not supported).
    let texts: [String]
    let encoding_format: String?
    let dimensions: Int?
    let user: String?

    init(json: JSONObject) throws {
        model = try json.string("model")
        let notText = APIError.invalid("'input' must be a string or a list of strings.", param: "input")
        switch json["input"] {
        case .string(let one)?:
            texts = [one]
        case .array(let elements)?:
            texts = try elements.map { element in
                switch element {
                case .string(let text): return text
                case .number, .integer, .array: throw APIError.invalid("Token arrays are not supported; send 'input' as text.", param: "input")
                default: throw notText
                }
            }
        case nil:
            throw JSONObject.Mismatch(path: "input", missing: true)
        default:
            throw notText
        }
        encoding_format = try json.optionalString("encoding_format")
        dimensions = try json.optionalInt("dimensions")
        user = try json.optionalString("user")
    }
}

/// The answer of `POST /v1/embeddings`.
struct EmbeddingList: Encodable {
    struct Item: Encodable {
        var object = "embedding"
        let index: Int
        let embedding: Vector
    }
    /// A vector as floats, or as base64 of its little-endian float32 values.
    enum Vector: Encodable {
        case floats([Float])
        case base64(String)
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .floats(let values): try container.encode(values)
            case .base64(let text): try container.encode(text)
            }
        }
    }
    struct Usage: Encodable {
        let prompt_tokens: Int
        let total_tokens: Int
    }
    var object = "list"
    let data: [Item]
    let model: String
    let usage: Usage
}

extension API {
    /// `POST /v1/embeddings`: enqueues one embedding job for all inputs and answers with its vectors.
    func addEmbeddingRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/embeddings") { request, _ in try await embeddings(request) }
    }

    private func embeddings(_ request: Request) async throws -> Response {
        let caller = try await identifyCounting(request, generatingOn: embeddingQueue)
        let user = caller.user
        let (body, jobID) = try await whileCounted(caller) {
            let body = try await decodeBody(EmbeddingRequest.self, of: request, what: "embeddings request")
            guard configuration.embeddingModels.contains(body.model) else {
                throw APIError(.notFound, code: "model_not_found", message: "The embedding model '\(body.model.prefix(100))' does not exist.", param: "model")
            }
            return (body, try await enqueueEmbedding(of: try validated(body), model: body.model, for: caller))
        }
        let base64 = body.encoding_format == "base64"
        logger.info("embedding job enqueued", metadata: ["job": "\(jobID)", "user": "\(user)", "inputs": "\(body.texts.count)"])

        let embeddings = try await embeddingsOf(jobID)
        let items = embeddings.vectors.enumerated().map { index, vector in
            EmbeddingList.Item(index: index, embedding: base64 ? .base64(Embeddings.base64(vector)) : .floats(vector))
        }
        var headers: HTTPFields = [:]
        headers[.init("X-Tern-Job-Id")!] = jobID.rawValue
        return try json(EmbeddingList(
            data: items, model: body.model,
            usage: .init(prompt_tokens: embeddings.promptTokens, total_tokens: embeddings.promptTokens)), headers: headers)
    }

    /// Admits (`admitting`) and enqueues an embedding job for `texts`, stored as the caller's.
    func enqueueEmbedding(of texts: [String], model: String, for caller: Caller) async throws -> JobID {
        let estimate = texts.reduce(0) { $0 + $1.utf8.count } / 4 + 1
        let buckets = tokenBuckets(of: caller)
        return try await admitting(estimate, in: buckets, for: caller, on: embeddingQueue) {
            let jobID = JobID()
            try await store.createJob(user: caller.user, apiKey: caller.key, jobID: jobID.uuid, kind: EmbeddingJob.type, model: model)
            let job = EmbeddingJob(userID: caller.user.uuid, model: model, inputs: texts, tokenBuckets: buckets.limits, reservedTokens: estimate)
            try await enqueue(on: embeddingQueue, NewJob(
                id: jobID, type: EmbeddingJob.type, tenant: caller.user.tenant, payload: String(decoding: try JSONEncoder().encode(job), as: UTF8.self),
                lane: .interactive, provider: model))
            return jobID
        }
    }

    /// Waits for an embedding job's vectors (or its failure, as an API error).
    func embeddingsOf(_ jobID: JobID) async throws -> Embeddings {
        var outcome: EmbeddingOutcome?
        let deadline = ContinuousClock.now + configuration.answerTimeout
        try await followEntries(jobID, in: embeddingEvents) { entry in
            outcome = EmbeddingOutcome(event: entry.fields)
            return outcome == nil
        } onIdle: {
            if ContinuousClock.now > deadline { throw APIError.noAnswer(within: configuration.answerTimeout) }
        }
        switch outcome {
        case .vectors(let embeddings): return embeddings
        case .failed(let code, let message): throw APIError(.badGateway, type: "server_error", code: code, message: message)
        case .cancelled: throw APIError.cancelled
        case .noVectors, nil:
            throw APIError(.internalServerError, type: "server_error", code: "internal_error", message: "The job ended without vectors.")
        }
    }

    /// The request's texts, checked against the limits.
    private func validated(_ body: EmbeddingRequest) throws -> [String] {
        let texts = body.texts
        let limits = configuration.limits
        guard !texts.isEmpty, texts.count <= limits.maximumEmbeddingInputs else {
            throw APIError.invalid("'input' must hold 1 to \(limits.maximumEmbeddingInputs) texts.", param: "input")
        }
        for (index, text) in texts.enumerated() {
            guard !text.isEmpty else { throw APIError.invalid("input[\(index)] is empty.", param: "input") }
            guard text.count <= limits.maximumPromptCharacters else {
                throw APIError(.contentTooLarge, code: "prompt_too_large",
                               message: "input[\(index)] holds \(text.count) characters; the limit is \(limits.maximumPromptCharacters).", param: "input")
            }
        }
        if let format = body.encoding_format, !["float", "base64"].contains(format) {
            throw APIError.invalid("'encoding_format' must be 'float' or 'base64'.", param: "encoding_format")
        }
        if body.dimensions != nil {
            throw APIError.invalid("'dimensions' is not supported: each model has its own.", param: "dimensions")
        }
        if let user = body.user, user.utf8.count > 256 { throw APIError.invalid("'user' may hold at most 256 bytes.", param: "user") }
        return texts
    }

}
