import Foundation

/// What the API puts on the queue for `POST /v1/embeddings`: the texts to embed.
public struct EmbeddingJob: Codable, Sendable, Equatable {
    public static let type = "embedding"

    public var userID: UUID
    /// The public model name the client asked for.
    public var model: String
    public var inputs: [String]
    /// The caller's token-a-minute buckets and the tokens reserved in them (see `ChatJob`).
    public var tokenBuckets: [String: Int]?
    public var reservedTokens: Int?

    public init(userID: UUID, model: String, inputs: [String], tokenBuckets: [String: Int]? = nil, reservedTokens: Int? = nil) {
        self.userID = userID
        self.model = model
        self.inputs = inputs
        self.tokenBuckets = tokenBuckets
        self.reservedTokens = reservedTokens
    }
}

/// The vectors of an embedding job, as its `embeddings` event carries them: all vectors'
/// float32 values, little-endian, in one base64 text.
public struct Embeddings: Sendable, Equatable {
    public var vectors: [[Float]]
    public var promptTokens: Int

    public init(vectors: [[Float]], promptTokens: Int) {
        self.vectors = vectors
        self.promptTokens = promptTokens
    }

    /// The event's fields.
    public var fields: KeyValuePairs<String, String> {
        [
            "type": "embeddings", "count": String(vectors.count), "dimensions": String(vectors.first?.count ?? 0),
            "vectors": Self.base64(vectors.joined()), "prompt_tokens": String(promptTokens),
        ]
    }

    /// Float32 values, little-endian, as base64 (OpenAI's `encoding_format: base64`).
    public static func base64(_ values: some Collection<Float>) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return Data(bytes).base64EncodedString()
    }

    /// Reads the event's fields; `nil` if they are not a whole set of vectors.
    public init?(fields: [String: String]) {
        guard fields["type"] == "embeddings", let count = fields["count"].flatMap(Int.init), let dimensions = fields["dimensions"].flatMap(Int.init),
              let data = fields["vectors"].flatMap({ Data(base64Encoded: $0) }), data.count == count * dimensions * 4
        else { return nil }
        let values = data.withUnsafeBytes { raw in
            (0..<(count * dimensions)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        vectors = (0..<count).map { Array(values[($0 * dimensions)..<(($0 + 1) * dimensions)]) }
        promptTokens = fields["prompt_tokens"].flatMap(Int.init) ?? 0
    }
}

/// How an embedding job ended, read from one of its events; `nil` for an event that does not
/// end it.
public enum EmbeddingOutcome: Sendable, Equatable {
    case vectors(Embeddings)
    case failed(code: String, message: String)
    case cancelled
    /// `completed` without an `embeddings` event before it.
    case noVectors

    public init?(event fields: [String: String]) {
        switch fields["type"] {
        case "embeddings":
            guard let embeddings = Embeddings(fields: fields) else { return nil }
            self = .vectors(embeddings)
        case "error": self = .failed(code: fields["code"] ?? "upstream_error", message: fields["message"] ?? "The embedding failed.")
        case "cancelled": self = .cancelled
        case "completed": self = .noVectors
        default: return nil
        }
    }
}

/// What the API puts on the queue for an uploaded document: the document to parse, chunk,
/// embed with `model` and store.
public struct DocumentIngestJob: Codable, Sendable, Equatable {
    public static let type = "document.ingest"

    public var documentID: UUID
    public var userID: UUID
    /// The public name of the embedding model.
    public var model: String

    public init(documentID: UUID, userID: UUID, model: String) {
        self.documentID = documentID
        self.userID = userID
        self.model = model
    }
}
