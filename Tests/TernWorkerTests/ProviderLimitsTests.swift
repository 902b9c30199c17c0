import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing
import TernAI
import TernQueue
import TernRedis
import TernTestSupport

/// Calls the slow mock upstream once, as a model call would.
struct UpstreamCall: JobHandler {
    let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.slowLLMURL, model: "mock"))

    func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        for try await _ in provider.streamChat(messages: [ChatMessage(role: "user", content: "hi")], options: GenerationOptions(maxTokens: 8)) {}
        return JobOutcome()
    }
}

/// What the mock upstream saw.
struct UpstreamStats: Decodable {
    let max_in_flight: Int
    let arrivals_ms: [Int64]
}

/// The acceptance check for provider limits: 4 workers with 16 slots each, sharing the
/// limits through Redis, against a mock upstream that counts what reaches it.
@Suite(.serialized) struct ProviderLimitsTests {
    func upstream(_ path: String, method: HTTPMethod = .GET) async throws -> UpstreamStats? {
        var request = HTTPClientRequest(url: String(TestServices.slowLLMURL.dropLast("/v1".count)) + path)
        request.method = method
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 64 << 20)
        return try? JSONDecoder().decode(UpstreamStats.self, from: Data(body.readableBytesView))
    }

    /// Runs `jobs` upstream calls through 4 workers of 16 slots (each with its own Redis
    /// connections, as separate processes have) under `limits`; returns when each one started.
    func run(jobs: Int, limits: ProviderLimits) async throws -> [Int64] {
        try await TestServices.withRedis { (redis: RedisClient) async throws -> [Int64] in
            let name = QueueName(TestServices.uniqueName("limits"))
            let queue = RedisJobQueue(name: name, client: redis)
            try await queue.setLimits(limits, for: "llm")
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            for index in 0..<4 {
                let client = try TestServices.redisClient()
                var configuration = JobWorker.Configuration()
                configuration.name = "\(name)-worker-\(index)"
                configuration.concurrency = 16
                let worker = JobWorker(
                    configuration: configuration, queue: RedisJobQueue(name: name, client: client),
                    handlers: ["call": UpstreamCall()], logger: TestServices.logger)
                services += [.init(service: client), .init(service: worker)]
            }
            let group = ServiceGroup(configuration: .init(services: services, logger: TestServices.logger))
            var ids: [JobID] = []
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                for _ in 0..<jobs { ids.append(try await queue.enqueue(NewJob(type: "call", tenant: "t", payload: "", provider: "llm")).id) }
                let done = try await eventually(timeout: .seconds(300)) { try await queue.stats().completed == jobs }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                #expect(done)
            }
            var starts: [Int64] = []
            for id in ids { if let started = try await queue.status(id)?.startedAt { starts.append(started) } }
            return starts
        }
    }

    /// The most events in any window of `length` milliseconds.
    func busiestWindow(_ times: [Int64], length: Int64) -> Int {
        let sorted = times.sorted()
        var busiest = 0
        var start = 0
        for end in sorted.indices {
            while sorted[end] - sorted[start] >= length { start += 1 }
            busiest = max(busiest, end - start + 1)
        }
        return busiest
    }

    @Test func aConcurrencyCapHoldsAcrossWorkers() async throws {
        _ = try await upstream("/stats/reset", method: .POST)
        _ = try await run(jobs: 64, limits: ProviderLimits(concurrency: 8))
        let seen = try #require(try await upstream("/stats"))
        #expect(seen.arrivals_ms.count == 64)
        #expect(seen.max_in_flight <= 8)
        #expect(seen.max_in_flight > 1)  // the 64 slots did run calls side by side
    }

    @Test func twoSlotsMeanAtMostTwoCallsAtOnceFromFourWorkers() async throws {
        _ = try await upstream("/stats/reset", method: .POST)
        _ = try await run(jobs: 24, limits: ProviderLimits(concurrency: 2))
        let seen = try #require(try await upstream("/stats"))
        #expect(seen.arrivals_ms.count == 24)
        #expect(seen.max_in_flight == 2)
    }

    @Test func aRateLimitHoldsInEveryTenSecondWindow() async throws {
        _ = try await upstream("/stats/reset", method: .POST)
        // 600 a minute is 100 in ten seconds; 130 jobs take over 12 seconds.
        let starts = try await run(jobs: 130, limits: ProviderLimits(requestsPerMinute: 600, burst: 1))
        let seen = try #require(try await upstream("/stats"))
        #expect(starts.count == 130)
        #expect(busiestWindow(starts, length: 10_000) <= 100)
        // At the upstream, arrival times trail the starts by one HTTP round trip, whose time
        // varies with the machine's load: a window there may catch a call or two more (the
        // queue's own start times above are the exact check).
        #expect(busiestWindow(seen.arrivals_ms, length: 10_000) <= 102)
    }
}
