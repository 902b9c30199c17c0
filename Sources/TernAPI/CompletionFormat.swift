import Foundation
import NIOCore
import TernAI

/// Builds OpenAI-format completion objects and chunks for one job (the API's answers, and
/// `tern mock-llm`'s).
package struct CompletionFormat: Sendable {
    let id: String
    let model: String
    let created: Int
    /// What every piece's event starts with, up to its text (`tokenEvent`).
    private let tokenEventHead: String

    package init(id: String, model: String, created: Int) {
        self.id = id
        self.model = model
        self.created = created
        tokenEventHead = #"data: {"id":"# + JSONText.string(id) + #","object":"chat.completion.chunk","created":"# + String(created)
            + #","model":"# + JSONText.string(model) + #","choices":[{"index":0,"delta":{"content":"#
    }

    package struct Chunk: Encodable {
        struct Choice: Encodable {
            let index = 0
            let delta: [String: String]
            let finish_reason: String?
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(index, forKey: .index)
                try container.encode(delta, forKey: .delta)
                try container.encode(finish_reason, forKey: .finish_reason)
            }
            enum CodingKeys: String, CodingKey { case index, delta, finish_reason }
        }
        let id: String
        let object = "chat.completion.chunk"
        let created: Int
        let model: String
        let choices: [Choice]
        let usage: Usage?
        /// On the last chunk of an answer given from documents: its sources.
        var citations: [Citation]?
    }

    package struct Usage: Encodable {
        let prompt_tokens: Int
        let completion_tokens: Int
        let total_tokens: Int
    }

    package struct Completion: Encodable {
        struct Choice: Encodable {
            let index = 0
            let message: [String: String]
            let finish_reason: String
        }
        let id: String
        let object = "chat.completion"
        let created: Int
        let model: String
        let choices: [Choice]
        let usage: Usage
        /// For an answer given from documents: its sources.
        var citations: [Citation]?
    }

    package func chunk(delta: [String: String], finishReason: String? = nil, citations: [Citation]? = nil) -> Chunk {
        Chunk(id: id, created: created, model: model, choices: [.init(delta: delta, finish_reason: finishReason)], usage: nil, citations: citations)
    }

    package func usageChunk(prompt: Int, completion: Int) -> Chunk {
        Chunk(id: id, created: created, model: model, choices: [], usage: usage(prompt: prompt, completion: completion))
    }

    package func completion(answer: String, finishReason: String, prompt: Int, completion: Int, citations: [Citation]?) -> Completion {
        Completion(id: id, created: created, model: model,
                   choices: [.init(message: ["role": "assistant", "content": answer], finish_reason: finishReason)],
                   usage: usage(prompt: prompt, completion: completion), citations: citations)
    }

    private func usage(prompt: Int, completion: Int) -> Usage {
        Usage(prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion)
    }

    /// The event of one piece of the answer: the chunk `chunk(delta: ["content": text])` is,
    /// written directly. Every piece of every stream takes this path; JSONEncoder made it cost
    /// the API a seventh more CPU.
    package func tokenEvent(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(tokenEventHead.utf8.count + text.utf8.count + 40)
        buffer.writeString(tokenEventHead)
        buffer.writeString(JSONText.string(text))
        buffer.writeString(#"},"finish_reason":null}]}"# + "\n\n")
        return buffer
    }

    /// One Server-Sent Event carrying `value` as JSON.
    package func sse(_ value: some Encodable) throws -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(try JSONEncoder().encode(value))
        buffer.writeString("\n\n")
        return buffer
    }
}
