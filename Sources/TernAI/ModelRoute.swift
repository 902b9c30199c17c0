import AsyncHTTPClient
import NIOConcurrencyHelpers

/// One model's deployments in order of preference, each with its provider and circuit breaker.
/// A call goes to the first deployment whose circuit lets it through; a failure that may pass
/// (unreachable, timed out, throttled, 5xx, cut short), before anything was streamed, moves it
/// on to the next one. Once the answer has begun, a failure ends the call: another deployment
/// would give another answer. The circuits only steer calls between deployments: when every
/// circuit is open, the last deployment is tried anyway, so a model with one deployment keeps
/// being tried (with the provider's own retries) through an outage.
public struct ModelRoute: Sendable {
    public struct Target: Sendable {
        public let name: String
        public let provider: OpenAIProvider
        public let breaker: CircuitBreaker

        public init(name: String, provider: OpenAIProvider, breaker: CircuitBreaker = CircuitBreaker()) {
            self.name = name
            self.provider = provider
            self.breaker = breaker
        }
    }

    /// The public model name.
    public let model: String
    /// Tokens of prompt and answer one call may hold, if known.
    public let contextWindow: Int?
    /// Put first in every conversation without a system message of its own.
    public let systemPrompt: String?
    public let targets: [Target]

    public init(model: String, contextWindow: Int? = nil, systemPrompt: String? = nil, targets: [Target]) {
        self.model = model
        self.contextWindow = contextWindow
        self.systemPrompt = systemPrompt
        self.targets = targets
    }

    /// A model with one deployment.
    public init(model: String, contextWindow: Int? = nil, systemPrompt: String? = nil, provider: OpenAIProvider) {
        self.init(
            model: model, contextWindow: contextWindow, systemPrompt: systemPrompt,
            targets: [Target(name: "default", provider: provider, breaker: CircuitBreaker())])
    }

    /// The conversation as the model gets it: the model's system prompt first, unless the
    /// conversation has a system message of its own.
    public func prompt(_ messages: [ChatMessage]) -> [ChatMessage] {
        guard let systemPrompt, !messages.contains(where: { $0.role == "system" }) else { return messages }
        return [ChatMessage(role: "system", content: systemPrompt)] + messages
    }

    /// The route of a catalogue model; `settings` adds the timeouts and attempts to each
    /// deployment's configuration.
    public init(
        _ model: ModelCatalogue.Model, httpClient: HTTPClient,
        settings: (OpenAIProvider.Configuration) throws -> OpenAIProvider.Configuration = { $0 }
    ) rethrows {
        self.init(model: model.name, contextWindow: model.contextWindow, systemPrompt: model.systemPrompt, targets: try model.deployments.map { deployment in
            var configuration = try settings(OpenAIProvider.Configuration(baseURL: deployment.baseURL, apiKey: deployment.apiKey, model: deployment.upstreamModel))
            configuration.tokenizer = deployment.tokenizer
            return Target(name: deployment.name, provider: OpenAIProvider(configuration: configuration, httpClient: httpClient), breaker: CircuitBreaker())
        })
    }

    /// Streams a chat completion from the first deployment that answers, in batches: a batch
    /// holds every part that came since the reader took the last one. A reader that keeps up
    /// gets a part at a time; one that falls behind (its write of the last batch still in
    /// flight, on a loaded machine) catches up in one step instead of one write per part, so the
    /// answer's events never lag the model by more than a write. Stopping the reading (or
    /// cancelling its task) aborts the model call.
    public func streamChat(messages: [ChatMessage], options: GenerationOptions) -> some AsyncSequence<[ChatStreamPart], any Error> {
        let arrived = NIOLockedValueBox<[ChatStreamPart]>([])
        // At most one signal waits: the parts behind a signal are taken with the one before.
        let (signals, continuation) = AsyncThrowingStream<Void, any Error>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let task = Task {
            do {
                try await route { target in
                    let answered = NIOLockedValueBox(false)
                    try await target.provider.chat(messages: messages, options: options) { part in
                        // The deployment works once it answers: a probe need not wait for the end.
                        if case .text = part, !answered.withLockedValue({ answered in
                            defer { answered = true }
                            return answered
                        }) {
                            target.breaker.succeeded()
                        }
                        arrived.withLockedValue { $0.append(part) }
                        continuation.yield()
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return signals.compactMap { _ -> [ChatStreamPart]? in
            let batch = arrived.withLockedValue { parts in
                defer { parts = [] }
                return parts
            }
            return batch.isEmpty ? nil : batch
        }
    }

    /// Embeds texts with the first deployment that answers.
    public func embed(_ inputs: [String]) async throws -> Embeddings {
        try await route { target in try await target.provider.embed(inputs) }
    }

    /// Counts each text's tokens with the tokenizer of the first deployment whose circuit is
    /// closed; `nil` if it has none (see `OpenAIProvider.Configuration.tokenizer`).
    public func countTokens(_ texts: [String]) async -> [Int]? {
        await targets.first { !$0.breaker.isOpen }?.provider.countTokens(texts)
    }

    private func route<Result>(_ call: (Target) async throws -> Result) async throws -> Result {
        var lastError: (any Error)?
        var tried = false
        for (index, target) in targets.enumerated() where target.breaker.acquire() || (!tried && index == targets.count - 1) {
            tried = true
            do {
                let result = try await call(target)
                // A stream cut short by its reader's cancellation ends quietly: it proves nothing.
                if Task.isCancelled { target.breaker.abandoned() } else { target.breaker.succeeded() }
                return result
            } catch let error as ProviderError where error.mayPassOnRetry {
                target.breaker.failed()
                if error.afterFirstPiece || Task.isCancelled { throw error }
                lastError = error
            } catch let error as ProviderError {
                target.breaker.succeeded()  // it answered, with a refusal of this request
                throw error
            } catch {
                target.breaker.abandoned()  // cancelled: nothing learnt about the deployment
                throw error
            }
        }
        throw lastError ?? ProviderError(.unavailable, "model \(model) has no deployment")
    }
}
