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

    public init(
        userID: UUID, conversationID: UUID, model: String, messages: [ChatMessage], options: GenerationOptions,
        tokenBuckets: [String: Int]? = nil, reservedTokens: Int? = nil
    ) {
        self.userID = userID
        self.conversationID = conversationID
        self.model = model
        self.messages = messages
        self.options = options
        self.tokenBuckets = tokenBuckets
        self.reservedTokens = reservedTokens
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

    /// The stream entry's fields.
    public var fields: KeyValuePairs<String, String> {
        switch self {
        case .started(let attempt): ["type": "start", "attempt": String(attempt)]
        case .token(let text): ["type": "token", "text": text]
        case .done(let reason, let prompt, let completion):
            ["type": "done", "finish_reason": reason, "prompt_tokens": String(prompt), "completion_tokens": String(completion)]
        case .failed(let code, let message): ["type": "error", "code": code, "message": message]
        case .cancelled: ["type": "cancelled"]
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
        default: return nil
        }
    }
}
