import Foundation
import Testing
import TernAI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport
@testable import TernWorker

/// The worker against the real Redis, PostgreSQL and `tern mock-llm`.
@Suite struct ChatWorkerTests {
    /// Enqueues one chat job, runs a worker until the job's `done` event, and returns the tokens streamed.
    func runJob(prepareEvents: @Sendable (JobEvents, JobID) async throws -> Void = { _, _ in }) async throws -> (tokens: [String], answer: [StoredMessage]) {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { redis in
                let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("worker")), client: redis)
                let events = JobEvents(queue: queue)
                let user = try await store.ensureUser(email: TestServices.uniqueName("worker") + "@test")
                let jobID = JobID()
                let messages = [ChatMessage(role: "user", content: "Say something")]
                let conversation = try await store.createChat(user: user, jobID: jobID.uuid, model: "mock", title: "t", messages: messages.map { StoredMessage(role: $0.role, content: $0.content) })
                // The API reserved 900 of the caller's 1000 tokens a minute; the worker settles the real count.
                let bucket = TokenBudget.Bucket(key: "\(TestServices.uniqueName("tokens")):{\(user)}:key", perMinute: 1000)
                try await TokenBudget(redis: redis).reserve(900, in: [bucket])
                let job = ChatJob(
                    userID: user.uuid, conversationID: conversation, model: "mock", messages: messages, options: GenerationOptions(maxTokens: 5),
                    tokenBuckets: [bucket.key: bucket.perMinute], reservedTokens: 900)
                try await prepareEvents(events, jobID)
                _ = try await queue.enqueue(NewJob(
                    id: jobID, type: ChatJob.type, tenant: "\(user)", payload: String(decoding: try JSONEncoder().encode(job), as: UTF8.self)))

                var configuration = JobWorker.Configuration()
                configuration.concurrency = 1
                configuration.idleWait = .milliseconds(200)
                let handler = ChatJobHandler(
                    events: events, store: store, provider: OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: "mock")),
                    budget: TokenBudget(redis: redis), logger: TestServices.logger)
                let worker = JobWorker(configuration: configuration, queue: queue, handlers: [ChatJob.type: handler], logger: TestServices.logger)
                // The worker runs until the job is finished, stored and acknowledged.
                let finished = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await worker.run() }
                    defer { group.cancelAll() }
                    return try await eventually {
                        let acknowledged = try await queue.status(jobID)?.state == .completed
                        let status = try await store.jobStatus(jobID.uuid, user: user)?.status
                        return acknowledged && status == "completed"
                    }
                }
                #expect(finished)
                // Settled: the few tokens used leave room for another 900.
                try await TokenBudget(redis: redis).reserve(900, in: [bucket])
                let tokens = try await events.all(jobID).compactMap { $0.type == "token" ? $0.fields["text"] : nil }
                #expect(try await events.all(jobID).map(\.type).suffix(2) == ["done", "completed"])
                let stored = try await store.messages(conversation: conversation, user: user)
                return (tokens, stored)
            }
        }
    }

    @Test func streamsTokensStoresTheAnswerAndAcknowledges() async throws {
        let (tokens, stored) = try await runJob()
        #expect(tokens == ["Mock answer", " token 1", " token 2", " token 3", " token 4"])
        #expect(stored.last == StoredMessage(role: "assistant", content: "Mock answer token 1 token 2 token 3 token 4"))
    }

    @Test func retryDoesNotRepeatWhatAnEarlierAttemptStreamed() async throws {
        // An earlier attempt streamed two pieces, then its worker died.
        let (tokens, stored) = try await runJob { events, job in
            try await events.append(job, ChatEvent.started(attempt: 1).fields)
            try await events.append(job, ChatEvent.token("Mock answer").fields)
            try await events.append(job, ChatEvent.token(" tok").fields)
        }
        #expect(tokens.joined() == "Mock answer token 1 token 2 token 3 token 4")
        #expect(stored.last?.content == "Mock answer token 1 token 2 token 3 token 4")
    }
}
