// Drives Tern's queue from outside, for the chaos test (tests/e2e/test_queue_chaos.py) and for
// bench/queue: worker processes that run no-op "drill" jobs, a producer, and a stats reader.
import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TernQueue
import TernRedis
import UnixSignals

@main
struct QueueDrill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Worker, producer and stats for drills of the job queue.",
        subcommands: [Work.self, Enqueue.self, Stats.self])
}

struct Connection: ParsableArguments {
    @Option(help: "Redis URL.") var redis = "redis://127.0.0.1:6379"
    @Option(help: "Queue name.") var queue = "drill"
    @Option(name: .customLong("lease-ms"), help: "Job lease in milliseconds.") var leaseMilliseconds = 30_000
    @Option(help: "Event loop threads (default: one per core).") var threads: Int?

    /// Runs Swift tasks on the event loops, as `tern worker` does; call first.
    func startEventLoops() {
        if let threads { NIOSingletons.groupLoopCountSuggestion = threads }
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    func open() throws -> (RedisClient, RedisJobQueue) {
        var logger = Logger(label: "drill")
        logger.logLevel = .warning
        let client = RedisClient(configuration: try RedisConfiguration(url: redis), logger: logger)
        var configuration = RedisJobQueue.Configuration()
        configuration.lease = .milliseconds(leaseMilliseconds)
        return (client, RedisJobQueue(name: QueueName(queue), client: client, configuration: configuration))
    }

    var latencyKey: String { "drill:{\(queue)}:latency-us" }
    var runsKey: String { "drill:{\(queue)}:runs" }
}

/// Microseconds since 1970, the clock the producer stamps jobs with.
func microseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

/// Completes after `work` (at once by default). With `latencyKey`, first notes how long after
/// its enqueue (stamped in the payload) the job started; with `runsKey`, counts every run, so a
/// drill can show jobs that ran more than once (their worker was killed) yet completed once.
struct DrillHandler: JobHandler {
    let client: RedisClient
    let latencyKey: String?
    let runsKey: String?
    let work: Duration

    func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        if let latencyKey, let sent = Int64(job.payload) {
            try await client.pushBack(latencyKey, [microseconds() - sent])
        }
        if let runsKey { _ = try await client.increment(runsKey) }
        if work > .zero { try await Task.sleep(for: work) }
        return JobOutcome()
    }
}

struct Work: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a worker for drill jobs until SIGTERM or SIGINT.")
    @OptionGroup var connection: Connection
    @Option(help: "Jobs at the same time.") var concurrency = 16
    @Flag(help: "Record each job's enqueue-to-start latency.") var record = false
    @Flag(name: .customLong("count-runs"), help: "Count every run of a job.") var countRuns = false
    @Option(name: .customLong("work-ms"), help: "How long each job takes.") var workMilliseconds = 0

    func run() async throws {
        connection.startEventLoops()
        let (client, queue) = try connection.open()
        var configuration = JobWorker.Configuration()
        configuration.concurrency = concurrency
        configuration.gracePeriod = .seconds(5)
        var logger = Logger(label: "drill.worker")
        logger.logLevel = .error
        let handler = DrillHandler(
            client: client, latencyKey: record ? connection.latencyKey : nil, runsKey: countRuns ? connection.runsKey : nil,
            work: .milliseconds(workMilliseconds))
        let worker = JobWorker(configuration: configuration, queue: queue, handlers: ["drill": handler], logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: client), .init(service: worker)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Enqueue drill jobs; print how long it took.")
    @OptionGroup var connection: Connection
    @Option(help: "Jobs to enqueue.") var count = 1000
    @Option(help: "Tenant of the jobs.") var tenant = "drill"
    @Option(help: "Enqueue calls in flight at once.") var parallel = 32
    @Option(name: .customLong("interval-ms"), help: "Pause between jobs (with --parallel 1), for latency at light load.")
    var intervalMilliseconds = 0

    func run() async throws {
        connection.startEventLoops()
        let (client, queue) = try connection.open()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<max(1, parallel) {
                group.addTask {
                    for _ in stride(from: lane, to: count, by: max(1, parallel)) {
                        // A failed call (Redis restarting) is repeated with the same id: if the
                        // first call did enqueue, the repeat finds the job instead of adding one.
                        let job = NewJob(type: "drill", tenant: tenant, payload: String(microseconds()), maximumAttempts: 10)
                        var failures = 0
                        while true {
                            do {
                                _ = try await queue.enqueue(job)
                                break
                            } catch {
                                failures += 1
                                guard failures < 200 else { throw error }
                                try await Task.sleep(for: .milliseconds(50))
                            }
                        }
                        if intervalMilliseconds > 0 { try await Task.sleep(for: .milliseconds(intervalMilliseconds)) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        print("enqueued \(count) in \(elapsed)")
        await client.shutdown()
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the queue's counts as JSON; optionally wait for completions first.")
    @OptionGroup var connection: Connection
    @Option(help: "Wait until this many jobs have completed.") var completed: Int?
    @Option(name: .customLong("timeout-s"), help: "Give up waiting after this many seconds.") var timeoutSeconds = 600

    func run() async throws {
        let (client, queue) = try connection.open()
        let start = ContinuousClock.now
        var stats = try await queue.stats()
        if let completed {
            while stats.completed < completed, ContinuousClock.now - start < .seconds(timeoutSeconds) {
                try await Task.sleep(for: .milliseconds(5))
                stats = try await queue.stats()
            }
        }
        let elapsed = ContinuousClock.now - start
        let runs = try? await client.get(connection.runsKey).map { String(buffer: $0) }
        let object: [String: Any] = [
            "runs": Int(runs ?? "") ?? 0,
            "ready": stats.ready, "delayed": stats.delayed, "active": stats.active, "completed": stats.completed,
            "failed": stats.failed, "cancelled": stats.cancelled, "totals": stats.totals, "live_workers": stats.liveWorkers.count,
            "waited_s": Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        await client.shutdown()
    }
}
