import Foundation
import HTTPTypes
import TernAI

/// The body of `POST /v1/chat/completions`, as OpenAI defines it (the fields Tern supports).
struct ChatCompletionRequest: JSONBody {
    struct Message {
        let role: String
        let content: String
    }
    struct StreamOptions {
        let include_usage: Bool?
    }

    let model: String
    let messages: [Message]
    let stream: Bool?
    let max_tokens: Int?
    let max_completion_tokens: Int?
    let temperature: Double?
    let top_p: Double?
    /// A string or a list of strings in the body.
    let stop: [String]?
    let seed: Int?
    let stream_options: StreamOptions?
    /// The caller's own id for its end user (OpenAI's `user`): logged with the job, for abuse reports.
    let user: String?
    /// Answer from the caller's documents (a Tern extension): `"all"`, or a list of ids.
    let documents: DocumentScope?
    /// Continue this conversation of the caller's (a Tern extension): its stored messages come
    /// before `messages`, which are added to it with the answer. Without it, a new one starts.
    let conversation: UUID?

    init(json: JSONObject) throws {
        model = try json.string("model")
        messages = try json.required(json.optionalArray("messages") { element, index in
            try Message(json: JSONObject(element, path: json.path("messages", index)))
        }, "messages")
        stream = try json.optionalBool("stream")
        max_tokens = try json.optionalInt("max_tokens")
        max_completion_tokens = try json.optionalInt("max_completion_tokens")
        temperature = try json.optionalDouble("temperature")
        top_p = try json.optionalDouble("top_p")
        if case .string(let one)? = json["stop"] { stop = [one] } else { stop = try json.optionalStrings("stop") }
        seed = try json.optionalInt("seed")
        stream_options = try json.optionalObject("stream_options").map { StreamOptions(include_usage: try $0.optionalBool("include_usage")) }
        user = try json.optionalString("user")
        documents = try json["documents"].map(DocumentScope.init)
        conversation = try json.optionalString("conversation").map { text in
            guard let id = UUID(uuidString: text) else { throw APIError.invalid("'conversation' must be a conversation id.", param: "conversation") }
            return id
        }
    }

    /// `"all"` (then `ids` is empty) or a list of at most 1000 document ids.
    struct DocumentScope {
        let ids: [UUID]
        init(json: JSONValue) throws {
            switch json {
            case .string("all"):
                ids = []
            case .string:
                throw APIError.invalid("'documents' must be \"all\" or a list of document ids.", param: "documents")
            case .array(let elements) where (1...1000).contains(elements.count):
                ids = try elements.map { element in
                    guard case .string(let text) = element, let id = UUID(uuidString: text) else {
                        throw APIError.invalid("'documents' must hold document ids.", param: "documents")
                    }
                    return id
                }
            default:
                throw APIError.invalid("'documents' must be \"all\" or a list of 1 to 1000 document ids.", param: "documents")
            }
        }
    }
}

extension ChatCompletionRequest.Message {
    init(json: JSONObject) throws {
        role = try json.string("role")
        // Content is a string or a list of parts; only text parts are supported.
        switch json["content"] {
        case .string(let text)?:
            content = text
        case .array?:
            let parts = try json.optionalArray("content") { element, index in
                try JSONObject(element, path: json.path("content", index))
            } ?? []
            guard try parts.allSatisfy({ try $0.string("type") == "text" }) else {
                throw APIError.invalid("Only text content parts are supported.", param: "messages")
            }
            content = try parts.compactMap { try $0.optionalString("text") }.joined()
        case nil:
            throw JSONObject.Mismatch(path: json.path("content"), missing: true)
        default:
            throw json.wrongType("content")
        }
    }
}

/// Limits on one chat request.
public struct ChatLimits: Sendable {
    /// Largest request body, in bytes.
    public var maximumBodyBytes = 1 << 20
    /// Most messages in one request.
    public var maximumMessages = 256
    /// Most characters across all messages (and in each text to embed).
    public var maximumPromptCharacters = 64 * 1024
    /// Most texts in one embeddings request.
    public var maximumEmbeddingInputs = 256
    /// Largest `max_tokens`.
    public var maximumCompletionTokens = 4096
    public init() {}
}

extension ChatCompletionRequest {
    /// Checks the request against `limits`; the thrown error names the offending parameter.
    func validated(limits: ChatLimits) throws -> (messages: [ChatMessage], options: GenerationOptions) {
        guard !messages.isEmpty else { throw APIError.invalid("'messages' must contain at least one message.", param: "messages") }
        if let user, user.utf8.count > 256 { throw APIError.invalid("'user' may hold at most 256 bytes.", param: "user") }
        guard messages.count <= limits.maximumMessages else {
            throw APIError.invalid("'messages' may hold at most \(limits.maximumMessages) messages.", param: "messages")
        }
        for (index, message) in messages.enumerated() where !["system", "user", "assistant", "developer"].contains(message.role) {
            throw APIError.invalid("messages[\(index)].role must be system, developer, user or assistant.", param: "messages[\(index)].role")
        }
        let characters = messages.reduce(0) { $0 + $1.content.count }
        guard characters <= limits.maximumPromptCharacters else {
            throw APIError(.contentTooLarge, code: "prompt_too_large",
                           message: "The messages hold \(characters) characters; the limit is \(limits.maximumPromptCharacters).", param: "messages")
        }
        let maxTokens = max_completion_tokens ?? max_tokens
        if let maxTokens, !(1...limits.maximumCompletionTokens).contains(maxTokens) {
            throw APIError.invalid("'max_tokens' must be between 1 and \(limits.maximumCompletionTokens).", param: "max_tokens")
        }
        if let temperature, !(0...2).contains(temperature) {
            throw APIError.invalid("'temperature' must be between 0 and 2.", param: "temperature")
        }
        if let top_p, !(0...1).contains(top_p) { throw APIError.invalid("'top_p' must be between 0 and 1.", param: "top_p") }
        if let stop, stop.count > 4 { throw APIError.invalid("'stop' may hold at most 4 sequences.", param: "stop") }
        let chatMessages = messages.map { ChatMessage(role: $0.role == "developer" ? "system" : $0.role, content: $0.content) }
        let options = GenerationOptions(maxTokens: maxTokens, temperature: temperature, topP: top_p, stop: stop, seed: seed)
        return (chatMessages, options)
    }
}
