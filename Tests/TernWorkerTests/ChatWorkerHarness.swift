import AsyncHTTPClient
import Foundation
import NIOCore
import PostgresNIO
import TernAI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport
@testable import TernWorker

/// One chat worker on a queue of its own, against the real Redis, PostgreSQL and
/// `tern mock-llm`, whose upstream model name picks the mock's behaviour (its fault modes).
struct ChatWorkerHarness: Sendable {
    let store: Store
    let queue: RedisJobQueue
    let events: JobEvents
    let budget: TokenBudget
    let user: UserID

    /// The answer the mock gives with `max_tokens` 5.
    static let wholeAnswer = "Mock answer token 1 token 2 token 3 token 4"

    /// Runs `body` while a worker serves the queue. `gapTimeout` bounds the wait for each piece;
    /// `configure` adjusts the provider (timeouts, attempts).
    static func run<Result: Sendable>(
        upstreamModel: String = "mock", systemPrompt: String? = nil, gapTimeout: TimeAmount = .seconds(30),
        provider configure: @escaping @Sendable (inout OpenAIProvider.Configuration) -> Void = { _ in },
        _ body: @escaping @Sendable (ChatWorkerHarness) async throws -> Result
    ) async throws -> Result {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { redis in
                let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("worker")), client: redis)
                let user = try await store.ensureUser(email: TestServices.uniqueName("worker") + "@test")
                let harness = ChatWorkerHarness(store: store, queue: queue, events: JobEvents(queue: queue), budget: TokenBudget(redis: redis), user: user)
                var settings = OpenAIProvider.Configuration(baseURL: TestServices.llmURL, model: upstreamModel)
                settings.retryBaseDelay = .milliseconds(20)
                configure(&settings)
                let httpClient = OpenAIProvider.httpClient(connections: 2, gapTimeout: gapTimeout)
                var configuration = JobWorker.Configuration()
                configuration.concurrency = 2
                configuration.idleWait = .milliseconds(200)
                let handler = ChatJobHandler(
                    queue: queue, events: harness.events, store: store,
                    routes: [ModelRoute(model: "mock", systemPrompt: systemPrompt, provider: OpenAIProvider(configuration: settings, httpClient: httpClient))],
                    budget: harness.budget, logger: TestServices.logger)
                let worker = JobWorker(configuration: configuration, queue: queue, handlers: [ChatJob.type: handler], logger: TestServices.logger)
                let result: Swift.Result<Result, any Error>
                do {
                    result = .success(try await withThrowingTaskGroup(of: Result?.self) { group in
                        group.addTask {
                            try await worker.run()
                            return nil
                        }
                        defer { group.cancelAll() }
                        return try await body(harness)
                    })
                } catch {
                    result = .failure(error)
                }
                try await httpClient.shutdown()
                return try result.get()
            }
        }
    }

    /// Enqueues a chat job for `model` as the API does; `bucket` is a tokens-a-minute bucket the
    /// API reserved `reserved` tokens in. Its rows are stored first unless `storingRows` is off
    /// (then `storeRows` stores them later, as an API whose insert is slower than the worker).
    func enqueue(
        model: String = "mock", maxTokens: Int = 5, bucket: TokenBudget.Bucket? = nil, reserved: Int? = nil, storingRows: Bool = true,
        beforeEnqueue: @Sendable (JobID) async throws -> Void = { _ in }
    ) async throws -> (job: JobID, conversation: UUID) {
        let (jobID, conversation) = (JobID(), UUID())
        if storingRows { try await storeRows(of: jobID, conversation: conversation, model: model) }
        let job = ChatJob(
            userID: user.uuid, conversationID: conversation, model: model, messages: Self.messages, options: GenerationOptions(maxTokens: maxTokens),
            tokenBuckets: bucket.map { [$0.key: $0.perMinute] }, reservedTokens: reserved)
        try await beforeEnqueue(jobID)
        _ = try await queue.enqueue(NewJob(
            id: jobID, type: ChatJob.type, tenant: "\(user)", payload: String(decoding: try JSONEncoder().encode(job), as: UTF8.self)))
        return (jobID, conversation)
    }

    /// The conversation each job asks about.
    static let messages = [ChatMessage(role: "user", content: "Say something")]

    /// Stores a job's conversation and job rows, as the API does.
    func storeRows(of job: JobID, conversation: UUID, model: String = "mock") async throws {
        _ = try await store.createChat(
            user: user, jobID: job.uuid, conversationID: conversation, model: model, title: "t",
            messages: Self.messages.map { StoredMessage(role: $0.role, content: $0.content) })
    }

    /// Waits until the queue and the database both hold the job as ended; returns the
    /// database's status (`completed`, `failed`, `cancelled`), or `nil` if it never ended.
    func ending(of job: JobID, timeout: Duration = .seconds(60)) async throws -> String? {
        var status: String?
        let ended = try await eventually(timeout: timeout) {
            guard let state = try await queue.status(job)?.state, [.completed, .failed, .cancelled].contains(state) else { return false }
            status = try await store.jobStatus(job.uuid, user: user)?.status
            return status.map { ["completed", "failed", "cancelled"].contains($0) } ?? false
        }
        return ended ? status : nil
    }

    /// The job's events as a client reads them.
    func chatEvents(_ job: JobID) async throws -> [ChatEvent] {
        try await events.all(job).compactMap { ChatEvent(fields: $0.fields) }
    }

    /// The answer's text as clients received it.
    func streamedText(_ job: JobID) async throws -> String {
        try await chatEvents(job).reduce(into: "") { text, event in if case .token(let piece) = event { text += piece } }
    }

    /// How many token events the job's stream holds.
    func tokenCount(_ job: JobID) async throws -> Int {
        try await chatEvents(job).count { if case .token = $0 { true } else { false } }
    }

    /// Whether no job of the queue waits or runs.
    func queueIsIdle() async throws -> Bool {
        let stats = try await queue.stats()
        return stats.ready == 0 && stats.delayed == 0 && stats.active == 0
    }

    /// The job's recorded token usage.
    func usage(_ job: JobID) async throws -> TokenUsage? {
        let rows = try await store.client.query("SELECT prompt_tokens, completion_tokens FROM jobs WHERE id = \(job.uuid)")
        for try await (prompt, completion) in rows.decode((Int?, Int?).self) {
            guard let prompt, let completion else { return nil }
            return TokenUsage(promptTokens: prompt, completionTokens: completion)
        }
        return nil
    }
}

/// What a `tern mock-llm` reports at `/stats`, read as `T` (the fields a test needs).
func mockStats<T: Decodable>(_ type: T.Type, of baseURL: String = TestServices.llmURL) async throws -> T {
    let request = HTTPClientRequest(url: String(baseURL.dropLast("/v1".count)) + "/stats")
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 64 << 20)
    return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
}
