import Foundation
import Logging
import TernAI
import TernQueue
import TernStore

/// Runs embedding jobs: one upstream request for all the job's inputs; the vectors go to the
/// job's `embeddings` event, where the API (any instance) picks them up.
public struct EmbeddingJobHandler: JobHandler {
    let queue: any JobQueue
    let events: JobEvents
    let store: Store
    let provider: OpenAIProvider
    let budget: TokenBudget
    let logger: Logger

    public init(queue: any JobQueue, events: JobEvents, store: Store, provider: OpenAIProvider, budget: TokenBudget, logger: Logger) {
        self.queue = queue
        self.events = events
        self.store = store
        self.provider = provider
        self.budget = budget
        self.logger = logger
    }

    public func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        var logger = logger
        logger[metadataKey: "job"] = "\(job.id)"
        guard let request = try? JSONDecoder().decode(EmbeddingJob.self, from: Data(job.payload.utf8)) else {
            logger.error("job payload is not an embedding job")
            try await store.failJob(job.id.uuid, reason: "the job could not be read")
            throw JobFailure(code: "invalid_job", "the job could not be read", retry: .never)
        }
        try await store.startJob(job.id.uuid, attempt: job.attempt)
        let embeddings: Embeddings
        do {
            embeddings = try await provider.embed(request.inputs)
        } catch let error as ProviderError {
            logger.warning("embedding call failed", metadata: ["error": "\(error.message)"])
            await budget.settle(buckets: request.tokenBuckets, reserved: request.reservedTokens, job: job.id, used: 0, logger: logger)
            try await store.failJob(job.id.uuid, reason: error.publicMessage)
            throw JobFailure(code: "upstream_error", error.publicMessage, retry: .never)
        }
        try await events.append(job.id, embeddings.fields)
        try await store.completeJob(job.id.uuid, usage: TokenUsage(promptTokens: embeddings.promptTokens, completionTokens: 0))
        await budget.settle(buckets: request.tokenBuckets, reserved: request.reservedTokens, job: job.id, used: embeddings.promptTokens, logger: logger)
        logger.info("embedding job completed", metadata: ["inputs": "\(request.inputs.count)", "prompt_tokens": "\(embeddings.promptTokens)"])
        return JobOutcome(tokens: embeddings.promptTokens)
    }
}
