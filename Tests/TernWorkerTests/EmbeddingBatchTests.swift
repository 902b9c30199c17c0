import Foundation
import Testing
import TernAI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport
@testable import TernWorker

/// What the mock upstream saw of embedding requests, by model name.
struct MockEmbeddingStats: Decodable {
    let embedding_requests: [String: Int]
    let embedding_inputs: [String: Int]
}

@Suite struct EmbeddingBatchTests {
    @Test func waitingEmbeddingJobsGoUpstreamInBatchesAndEachGetsItsOwnVectors() async throws {
        let jobs = 100
        let batchSize = 16
        // A model name of its own, so the mock's count is this test's.
        let model = TestServices.uniqueName("mock-batch")
        try await TestServices.withStore { store in
            try await TestServices.withRedis { redis in
                let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("embeddings")), client: redis)
                try await queue.setLimits(ProviderLimits(concurrency: 2), for: model)
                let events = JobEvents(queue: queue)
                let user = try await store.ensureUser(email: TestServices.uniqueName("batch") + "@test")
                // Each job one text, but the third of every ten holds three.
                var enqueued: [(id: JobID, inputs: [String])] = []
                for index in 0..<jobs {
                    let inputs = index % 10 == 2 ? ["text \(index) a", "text \(index) b", "text \(index) c"] : ["text \(index)"]
                    let id = JobID()
                    try await store.createJob(user: user, jobID: id.uuid, kind: EmbeddingJob.type, model: model)
                    let payload = EmbeddingJob(userID: user.uuid, model: model, inputs: inputs)
                    _ = try await queue.enqueue(NewJob(
                        id: id, type: EmbeddingJob.type, tenant: "\(user)", payload: String(decoding: try JSONEncoder().encode(payload), as: UTF8.self),
                        provider: model))
                    enqueued.append((id, inputs))
                }

                let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: model))
                var configuration = JobWorker.Configuration()
                configuration.concurrency = 2
                configuration.batchSize = batchSize
                let handler = EmbeddingJobHandler(events: events, store: store, routes: [ModelRoute(model: model, provider: provider)], budget: TokenBudget(redis: redis), logger: TestServices.logger)
                let worker = JobWorker(configuration: configuration, queue: queue, handlers: [EmbeddingJob.type: handler], logger: TestServices.logger)
                let finished = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await worker.run() }
                    defer { group.cancelAll() }
                    return try await eventually(timeout: .seconds(120)) { try await queue.stats().completed == jobs }
                }
                #expect(finished)

                let seen = try await mockStats(MockEmbeddingStats.self)
                let calls = try #require(seen.embedding_requests[model])
                #expect(calls <= (jobs + batchSize - 1) / batchSize, "\(calls) upstream calls for \(jobs) jobs")
                #expect(seen.embedding_inputs[model] == enqueued.reduce(0) { $0 + $1.inputs.count })

                // Each job's vectors are those of its own texts, as an unbatched call gives them.
                let control = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: "mock"))
                for (id, inputs) in enqueued {
                    let event = try #require(try await events.all(id).first { $0.type == "embeddings" })
                    let vectors = try #require(Embeddings(fields: event.fields)).vectors
                    #expect(vectors == (try await control.embed(inputs)).vectors)
                    #expect(try await store.jobStatus(id.uuid, user: user)?.status == "completed")
                }
            }
        }
    }

    @Test func tokensAreSplitInProportionAndSumExactly() {
        #expect(EmbeddingJobHandler.split(tokens: 10, by: [1, 1, 2]) == [2, 2, 6])
        #expect(EmbeddingJobHandler.split(tokens: 7, by: [0, 0]) == [7, 0])
        #expect(EmbeddingJobHandler.grouped([3, 1, 1, 5, 1], maximumInputs: 4, inputs: { $0 }) == [[3, 1], [1], [5], [1]])
    }
}
