/// Fits a conversation into a model's context window: the system messages and the newest
/// message always stay; older messages are dropped, oldest first, until the prompt and the
/// room kept for the answer fit. Counts come from the model server's tokenizer when the
/// estimate says the prompt might not fit, and from the estimate alone when it clearly does.
public enum PromptFitting {
    /// Tokens a chat template adds around each message (role markers), roughly.
    static let perMessage = 4

    /// The messages that fit `window` with `reserve` tokens left for the answer, in their
    /// order; `nil` when even the system messages and the newest message do not fit.
    /// `count` gives each text's exact tokens, or `nil` when no tokenizer answers.
    public static func fit(
        _ messages: [ChatMessage], window: Int, reserve: Int, count: ([String]) async -> [Int]?
    ) async -> [ChatMessage]? {
        let budget = window - reserve
        guard budget > 0, !messages.isEmpty else { return nil }
        // About four bytes a token; a prompt estimated at under half the budget fits anyway.
        let estimated = messages.map { $0.content.utf8.count / 4 + perMessage }
        if estimated.reduce(0, +) * 2 <= budget { return messages }
        // Without a tokenizer, three bytes a token: wordier text than English must fit too.
        let tokens = await count(messages.map(\.content))?.map { $0 + perMessage }
            ?? messages.map { $0.content.utf8.count / 3 + perMessage }
        let last = messages.count - 1
        var kept = Set(messages.indices.filter { messages[$0].role == "system" || $0 == last })
        var used = kept.reduce(0) { $0 + tokens[$1] }
        guard used <= budget else { return nil }
        for index in messages.indices.reversed() where !kept.contains(index) {
            guard used + tokens[index] <= budget else { break }
            kept.insert(index)
            used += tokens[index]
        }
        return messages.indices.filter(kept.contains).map { messages[$0] }
    }
}
