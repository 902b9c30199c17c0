import Foundation

/// What the API puts on the queue for one chat generation. The prompt travels in the payload,
/// so a worker needs no extra read before calling the model.
public struct ChatJob: Codable, Sendable, Equatable {
    public static let type = "chat"

    /// The owner, for storage and logs.
    public var userID: UUID
    public var conversationID: UUID
    /// The public model name the client asked for.
    public var model: String
    public var messages: [ChatMessage]
    public var options: GenerationOptions
    /// The caller's token-a-minute buckets (Redis key to tokens a minute) charged for this job,
    /// and the tokens reserved in them: the worker settles them with the real count.
    public var tokenBuckets: [String: Int]?
    public var reservedTokens: Int?
    /// The owner's documents to answer from: `[]` for all of them, `nil` for none.
    public var documents: [UUID]?

    public init(
        userID: UUID, conversationID: UUID, model: String, messages: [ChatMessage], options: GenerationOptions,
        tokenBuckets: [String: Int]? = nil, reservedTokens: Int? = nil, documents: [UUID]? = nil
    ) {
        self.userID = userID
        self.conversationID = conversationID
        self.model = model
        self.messages = messages
        self.options = options
        self.tokenBuckets = tokenBuckets
        self.reservedTokens = reservedTokens
        self.documents = documents
    }
}

extension ChatJob {
    /// The job's payload: JSONEncoder's format, written directly (`JSONText`), since every
    /// chat request writes one on the way to the first token.
    public var payload: String {
        var members = [
            #""userID":"# + JSONText.string(userID.uuidString), #""conversationID":"# + JSONText.string(conversationID.uuidString),
            #""model":"# + JSONText.string(model), #""messages":"# + messages.json, #""options":{"# + options.jsonMembers.joined(separator: ",") + "}",
        ]
        if let tokenBuckets {
            members.append(#""tokenBuckets":{"# + tokenBuckets.map { JSONText.string($0.key) + ":" + String($0.value) }.joined(separator: ",") + "}")
        }
        if let reservedTokens { members.append(#""reservedTokens":"# + String(reservedTokens)) }
        if let documents { members.append(#""documents":["# + documents.map { JSONText.string($0.uuidString) }.joined(separator: ",") + "]") }
        return "{" + members.joined(separator: ",") + "}"
    }

    /// Reads a job's payload (a `ChatJob` as JSONEncoder writes it) by hand (`JSONReader`):
    /// every chat job's worker reads one on the way to the model call.
    public init(payload: String) throws {
        let job = try JSONObject(JSONReader.read(payload))
        func uuid(_ text: String, at path: String) throws -> UUID {
            guard let id = UUID(uuidString: text) else { throw JSONObject.Mismatch(path: path, missing: false) }
            return id
        }
        let messages = try job.optionalArray("messages") { element, index in
            let message = try JSONObject(element, path: job.path("messages", index))
            return ChatMessage(role: try message.string("role"), content: try message.string("content"))
        }
        let options = try job.required(job.optionalObject("options"), "options")
        let buckets = try job.optionalObject("tokenBuckets").map { buckets in
            try buckets.members.keys.reduce(into: [String: Int]()) { $0[$1] = try buckets.required(buckets.optionalInt($1), $1) }
        }
        self.init(
            userID: try uuid(job.string("userID"), at: "userID"), conversationID: try uuid(job.string("conversationID"), at: "conversationID"),
            model: try job.string("model"), messages: try job.required(messages, "messages"),
            options: GenerationOptions(
                maxTokens: try options.optionalInt("max_tokens"), temperature: try options.optionalDouble("temperature"),
                topP: try options.optionalDouble("top_p"), stop: try options.optionalStrings("stop"), seed: try options.optionalInt("seed")),
            tokenBuckets: buckets, reservedTokens: try job.optionalInt("reservedTokens"),
            documents: try job.optionalStrings("documents")?.enumerated().map { try uuid($1, at: job.path("documents", $0)) })
    }
}

/// A source an answer was given from: a chunk of one of the owner's documents, numbered as
/// the prompt numbered it (`[1]`, `[2]`, ...).
public struct Citation: Codable, Sendable, Equatable {
    public var index: Int
    public var document_id: String
    public var chunk_id: Int64
    public var title: String
    public var heading: String
    /// The chunk's first 300 characters.
    public var snippet: String

    public init(index: Int, documentID: UUID, chunkID: Int64, title: String, heading: String, text: String) {
        self.index = index
        document_id = documentID.uuidString.lowercased()
        chunk_id = chunkID
        self.title = title
        self.heading = heading
        snippet = text.count > 300 ? String(text.prefix(300)) + "…" : text
    }

    /// The citations as JSON text (for an event field or a stored message).
    public static func json(_ citations: [Citation]) -> String {
        String(decoding: (try? JSONEncoder().encode(citations)) ?? Data("[]".utf8), as: UTF8.self)
    }

    public static func decode(_ text: String) -> [Citation]? {
        try? JSONDecoder().decode([Citation].self, from: Data(text.utf8))
    }
}

/// Answering from documents: the retrieved chunks become numbered sources in a system message
/// before the conversation, and the answer cites them by number.
public enum SourcesPrompt {
    /// `messages` with the sources first; the model's own system prompt (if any) stays first.
    public static func messages(_ messages: [ChatMessage], sources: [(citation: Citation, text: String)]) -> [ChatMessage] {
        var text = "Answer from the numbered sources below, citing them like [1]. If they do not hold the answer, say so.\n"
        if sources.isEmpty { text += "\n(No source matched the question.)\n" }
        for source in sources {
            let place = source.citation.heading.isEmpty ? source.citation.title : source.citation.title + " > " + source.citation.heading
            text += "\n[\(source.citation.index)] \(place)\n\(source.text)\n"
        }
        let system = ChatMessage(role: "system", content: text)
        let leading = messages.prefix { $0.role == "system" }
        return Array(leading) + [system] + messages.dropFirst(leading.count)
    }
}

/// The events of a chat job's stream, as the worker writes them and the API reads them.
public enum ChatEvent: Sendable, Equatable {
    /// A worker began an attempt.
    case started(attempt: Int)
    /// A piece of the answer.
    case token(String)
    /// The answer is complete.
    case done(finishReason: String, promptTokens: Int, completionTokens: Int)
    /// The job failed; `code` is stable, `message` is safe to show the job's owner.
    case failed(code: String, message: String)
    /// The job was cancelled (written by the queue).
    case cancelled
    /// The sources the answer is given from (before its first token).
    case sources([Citation])

    /// The stream entry's fields.
    public var fields: KeyValuePairs<String, String> {
        switch self {
        case .started(let attempt): ["type": "start", "attempt": String(attempt)]
        case .token(let text): ["type": "token", "text": text]
        case .done(let reason, let prompt, let completion):
            ["type": "done", "finish_reason": reason, "prompt_tokens": String(prompt), "completion_tokens": String(completion)]
        case .failed(let code, let message): ["type": "error", "code": code, "message": message]
        case .cancelled: ["type": "cancelled"]
        case .sources(let citations): ["type": "sources", "citations": Citation.json(citations)]
        }
    }

    /// Reads an event from a stream entry's fields; `nil` for entries of unknown type.
    public init?(fields: [String: String]) {
        switch fields["type"] {
        case "start": self = .started(attempt: Int(fields["attempt"] ?? "") ?? 1)
        case "token": self = .token(fields["text"] ?? "")
        case "done":
            self = .done(
                finishReason: fields["finish_reason"] ?? "stop",
                promptTokens: Int(fields["prompt_tokens"] ?? "") ?? 0,
                completionTokens: Int(fields["completion_tokens"] ?? "") ?? 0)
        case "error": self = .failed(code: fields["code"] ?? "internal_error", message: fields["message"] ?? "generation failed")
        case "cancelled": self = .cancelled
        case "sources": self = .sources(Citation.decode(fields["citations"] ?? "") ?? [])
        default: return nil
        }
    }
}
