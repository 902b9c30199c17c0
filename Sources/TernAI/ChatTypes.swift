/// A message in OpenAI's chat format.
public struct ChatMessage: Codable, Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Sampling and length settings of one generation.
public struct GenerationOptions: Codable, Sendable, Equatable {
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var stop: [String]?
    public var seed: Int?

    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil, stop: [String]? = nil, seed: Int? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.stop = stop
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", temperature, topP = "top_p", stop, seed
    }
}

extension [ChatMessage] {
    /// The messages as a JSON array of `role` and `content`, written directly (`JSONText`).
    var json: String {
        "[" + map { #"{"role":"# + JSONText.string($0.role) + #","content":"# + JSONText.string($0.content) + "}" }.joined(separator: ",") + "]"
    }
}

extension GenerationOptions {
    /// The options that are set, as JSON object members (`"max_tokens":64`), written directly.
    var jsonMembers: [String] {
        var members: [String] = []
        if let maxTokens { members.append(#""max_tokens":"# + String(maxTokens)) }
        if let temperature { members.append(#""temperature":"# + JSONText.number(temperature)) }
        if let topP { members.append(#""top_p":"# + JSONText.number(topP)) }
        if let stop { members.append(#""stop":["# + stop.map(JSONText.string).joined(separator: ",") + "]") }
        if let seed { members.append(#""seed":"# + String(seed)) }
        return members
    }
}

/// What a streaming generation yields.
public enum ChatStreamPart: Sendable, Equatable {
    /// A piece of the answer's text.
    case text(String)
    /// The end: why it stopped, and token counts when the upstream reported them.
    case finished(reason: String, promptTokens: Int?, completionTokens: Int?)
}

extension [ChatMessage] {
    /// The prompt's length in tokens without a tokenizer: about four bytes of text a token.
    public var estimatedTokens: Int { reduce(0) { $0 + $1.content.utf8.count } / 4 }
}
