import Foundation
import Logging
import TernAI
import TernQueue
import TernStore

/// Runs embedding jobs in batches: the inputs of the batch's jobs go upstream together (in
/// requests of at most `maximumInputsPerRequest` texts) and the vectors fan back out, each job's
/// to its own `embeddings` event, where the API (any instance) picks them up.
public struct EmbeddingJobHandler: BatchJobHandler {
    let events: JobEvents
    let store: Store
    /// The embedding models this worker serves, by public name.
    let routes: [String: ModelRoute]
    let budget: TokenBudget
    let logger: Logger
    /// Most texts in one upstream request.
    let maximumInputsPerRequest: Int

    public init(
        events: JobEvents, store: Store, routes: [ModelRoute], budget: TokenBudget, logger: Logger, maximumInputsPerRequest: Int = 256
    ) {
        self.events = events
        self.store = store
        self.routes = Dictionary(routes.map { ($0.model, $0) }, uniquingKeysWith: { first, _ in first })
        self.budget = budget
        self.logger = logger
        self.maximumInputsPerRequest = max(1, maximumInputsPerRequest)
    }

    public func handle(batch: [ClaimedJob]) async -> [Result<JobOutcome, any Error>] {
        var results = [Result<JobOutcome, any Error>](repeating: .failure(CancellationError()), count: batch.count)
        var requests: [(index: Int, job: ClaimedJob, request: EmbeddingJob)] = []
        for (index, job) in batch.enumerated() {
            if let request = try? JSONDecoder().decode(EmbeddingJob.self, from: Data(job.payload.utf8)) {
                guard routes[request.model] != nil else {
                    results[index] = await failure(job, code: "model_not_served", reason: "no worker serves the model \(request.model)", request: request)
                    continue
                }
                requests.append((index, job, request))
            } else {
                logger.error("job payload is not an embedding job", metadata: ["job": "\(job.id)"])
                results[index] = await failure(job, code: "invalid_job", reason: "the job could not be read", request: nil)
            }
        }
        // The worker batches jobs by provider, which the API sets to the model; grouping by
        // model here keeps a batch of jobs enqueued without a provider right too.
        let models = Dictionary(grouping: requests, by: \.request.model)
        for group in models.values.flatMap({ Self.grouped($0, maximumInputs: maximumInputsPerRequest, inputs: { $0.request.inputs.count }) }) {
            do {
                let embeddings = try await routes[group[0].request.model]!.embed(group.flatMap(\.request.inputs))
                let shares = Self.split(tokens: embeddings.promptTokens, by: group.map { $0.request.inputs.reduce(0) { $0 + $1.utf8.count } })
                var offset = 0
                var parts: [(index: Int, job: ClaimedJob, request: EmbeddingJob, embeddings: Embeddings)] = []
                for (item, tokens) in zip(group, shares) {
                    let count = item.request.inputs.count
                    parts.append((item.index, item.job, item.request, Embeddings(vectors: Array(embeddings.vectors[offset..<(offset + count)]), promptTokens: tokens)))
                    offset += count
                }
                for (index, result) in await deliver(parts) { results[index] = result }
                logger.info("embedding batch completed", metadata: ["jobs": "\(group.count)", "inputs": "\(offset)", "prompt_tokens": "\(embeddings.promptTokens)"])
            } catch where Task.isCancelled {
                // Released or lost: the jobs run again, so nothing is recorded.
                for item in group { results[item.index] = .failure(CancellationError()) }
            } catch {
                let reason = (error as? ProviderError)?.publicMessage ?? "the embedding failed"
                logger.warning("embedding call failed", metadata: ["error": "\((error as? ProviderError)?.message ?? "\(type(of: error))")", "jobs": "\(group.count)"])
                for item in group { results[item.index] = await failure(item.job, code: "upstream_error", reason: reason, request: item.request) }
            }
        }
        return results
    }

    /// Writes each job's vectors to its event stream and settles its tokens (concurrently: the
    /// Redis client pipelines them), then records the batch's jobs as completed in one statement.
    private func deliver(_ parts: [(index: Int, job: ClaimedJob, request: EmbeddingJob, embeddings: Embeddings)]) async -> [(Int, Result<JobOutcome, any Error>)] {
        let written = await withTaskGroup(of: (Int, (any Error)?).self) { group in
            for part in parts {
                group.addTask {
                    do {
                        try await events.append(part.job.id, part.embeddings.fields)
                        await budget.settle(
                            buckets: part.request.tokenBuckets, reserved: part.request.reservedTokens, job: part.job.id,
                            used: part.embeddings.promptTokens, logger: logger)
                        return (part.index, nil)
                    } catch {
                        return (part.index, error)
                    }
                }
            }
            return await group.reduce(into: [Int: any Error]()) { errors, item in if let error = item.1 { errors[item.0] = error } }
        }
        let stored: (any Error)?
        do {
            try await store.completeJobs(parts.filter { written[$0.index] == nil }.map {
                ($0.job.id.uuid, TokenUsage(promptTokens: $0.embeddings.promptTokens, completionTokens: 0))
            })
            stored = nil
        } catch {
            stored = error
        }
        return parts.map { part in
            // Not written or not stored: the attempt fails and is retried with backoff.
            if let error = written[part.index] ?? stored { return (part.index, .failure(error)) }
            return (part.index, .success(JobOutcome(tokens: part.embeddings.promptTokens)))
        }
    }

    /// Records a job's failure (it is not retried) and returns it as the job's result.
    private func failure(_ job: ClaimedJob, code: String, reason: String, request: EmbeddingJob?) async -> Result<JobOutcome, any Error> {
        if let request {
            await budget.settle(buckets: request.tokenBuckets, reserved: request.reservedTokens, job: job.id, used: 0, logger: logger)
        }
        do {
            try await store.failJob(job.id.uuid, reason: reason, run: JobRun(job))
        } catch {
            return .failure(error)  // retried: the failure is recorded next time
        }
        return .failure(JobFailure(code: code, reason, retry: .never))
    }

    /// Consecutive groups of items holding at most `maximumInputs` inputs each (an item larger
    /// than that is a group of its own).
    static func grouped<Item>(_ items: [Item], maximumInputs: Int, inputs: (Item) -> Int) -> [[Item]] {
        var groups: [[Item]] = []
        var current: [Item] = []
        var count = 0
        for item in items {
            if !current.isEmpty, count + inputs(item) > maximumInputs {
                groups.append(current)
                current = []
                count = 0
            }
            current.append(item)
            count += inputs(item)
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }

    /// Splits `tokens` in proportion to `weights` (the jobs' text lengths), summing exactly to `tokens`.
    static func split(tokens: Int, by weights: [Int]) -> [Int] {
        let total = weights.reduce(0, +)
        guard total > 0 else { return weights.enumerated().map { $0.offset == 0 ? tokens : 0 } }
        var shares = weights.map { tokens * $0 / total }
        if !shares.isEmpty { shares[shares.count - 1] += tokens - shares.reduce(0, +) }
        return shares
    }
}
