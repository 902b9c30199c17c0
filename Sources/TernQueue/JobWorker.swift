import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs a queue's jobs with the handlers registered per job type, `concurrency` at a time.
///
/// One loop claims as many jobs as there are free slots (up to `batchSize` per call) and,
/// once a claim gets fewer than it asked for (nothing more is ready), blocks on the queue's
/// wake-up signal. Another renews the leases of all running jobs in one call at a third of the
/// lease time. A job stops when its cancellation arrives (pub/sub, or the renewal's answer) and
/// reports its outcome; a failed attempt is retried with exponential backoff and jitter unless
/// the handler says otherwise. A job of a type with no handler fails
/// at once, visibly, instead of waiting forever. On graceful shutdown the worker stops claiming,
/// lets running jobs finish within `gracePeriod`, and returns the rest to the queue.
///
/// Metrics (swift-metrics, for whatever backend the process bootstraps): `tern_jobs_total`
/// by queue, type and outcome (completed, retried, failed, cancelled, released, lease_lost), and
/// the timer `tern_job_duration_seconds` by queue and type. A type without a handler is counted as
/// `unknown`, so clients cannot grow the label set.
public struct JobWorker: Service {
    public struct Configuration: Sendable {
        /// Unique per process: leases are held under it.
        public var name: String = "worker-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"
        /// Jobs run at the same time.
        public var concurrency: Int = 4
        /// Most jobs claimed in one call.
        public var batchSize: Int = 16
        /// Longest wait for a wake-up before claiming again anyway.
        public var idleWait: Duration = .seconds(1)
        /// How long running jobs may take to finish after shutdown begins.
        public var gracePeriod: Duration = .seconds(30)
        /// Backoff for failed attempts of handlers without a policy of their own.
        public var retry = RetryPolicy()
        /// How often the worker announces itself; it counts as gone after three missed beats.
        public var heartbeat: Duration = .seconds(5)

        public init() {}
    }

    let configuration: Configuration
    let queue: any JobQueue
    let handlers: [String: any JobHandler]
    /// Whether every handler runs batches: then claims take whole batches.
    let batching: Bool
    let logger: Logger

    public init(configuration: Configuration, queue: any JobQueue, handlers: [String: any JobHandler], logger: Logger) {
        self.configuration = configuration
        self.queue = queue
        self.handlers = handlers
        batching = !handlers.isEmpty && handlers.values.allSatisfy { $0 is any BatchJobHandler }
        self.logger = logger
    }

    public func run() async throws {
        let running = RunningJobs()
        logger.info("worker started", metadata: [
            "worker": "\(configuration.name)", "queue": "\(queue.name)", "types": "\(handlers.keys.sorted())",
        ])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await heartbeats() }
            group.addTask { await renewLeases(running) }
            group.addTask {
                await queue.followCancellations { id in running.signal(job: id, .cancel) }
            }
            await withGracefulShutdownHandler {
                await dispatch(running)
            } onGracefulShutdown: {
                running.wakeDispatcher()
            }
            group.cancelAll()
        }
        logger.info("worker stopped", metadata: ["worker": "\(configuration.name)"])
    }

    /// Renews every running job's lease at a third of the lease time; tells a job whose
    /// cancellation was requested, or whose lease was lost, to stop.
    private func renewLeases(_ running: RunningJobs) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: queue.lease / 3)
            let jobs = running.jobs
            guard !jobs.isEmpty else { continue }
            do {
                for (job, renewal) in zip(jobs, try await queue.renew(jobs)) {
                    switch renewal {
                    case .renewed: break
                    case .cancelRequested: running.signal(lease: job.lease, .cancel)
                    case .lost: running.signal(lease: job.lease, .leaseLost)
                    }
                }
            } catch {
                // Redis unreachable for now: the next round tells.
                logger.warning("lease renewal failed", metadata: ["error": "\(error)", "jobs": "\(jobs.count)"])
            }
        }
    }

    private func heartbeats() async {
        let types = handlers.keys.sorted()
        while !Task.isCancelled {
            do {
                try await queue.heartbeat(worker: configuration.name, types: types, ttl: configuration.heartbeat * 3)
            } catch {
                logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.heartbeat)
        }
    }

    /// Claims and starts jobs until graceful shutdown, then winds down.
    private func dispatch(_ running: RunningJobs) async {
        await withDiscardingTaskGroup { group in
            var failures = 0
            // Set when the last claim got fewer jobs than it asked for: nothing more is ready,
            // so the next claim waits for a wake-up (each enqueue leaves one) instead of asking
            // at once, and in vain, while the jobs just claimed start.
            var wakeWithin: Duration?
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                await running.waitForFreeSlot(below: configuration.concurrency)
                if Task.isShuttingDownGracefully || Task.isCancelled { break }
                do {
                    let free = configuration.concurrency - running.count
                    let maximum = batching ? configuration.batchSize : min(configuration.batchSize, max(1, free))
                    let result = if let wakeWithin {
                        try await queue.claimAfterWake(worker: configuration.name, maximum: maximum, batch: batching, timeout: wakeWithin)
                    } else {
                        try await queue.claim(worker: configuration.name, maximum: maximum, batch: batching)
                    }
                    failures = 0
                    if Task.isShuttingDownGracefully || Task.isCancelled {
                        // Claimed while the wait for a wake-up outlasted the start of shutdown:
                        // back to the queue, unstarted.
                        for job in result.jobs {
                            do {
                                _ = try await queue.release(job)
                            } catch {
                                // Its lease runs out instead, and the job runs again then.
                                logger.warning("a job claimed during shutdown was not released", metadata: ["job": "\(job.id)", "error": "\(error)"])
                            }
                        }
                        break
                    }
                    wakeWithin = result.jobs.count < maximum ? min(result.retryIn ?? configuration.idleWait, configuration.idleWait) : nil
                    for unit in units(result.jobs) {
                        unit.forEach(running.register)
                        running.unitStarted()
                        group.addTask {
                            if unit.count == 1 {
                                await run(unit[0], running)
                            } else {
                                await runBatch(unit)
                            }
                            unit.forEach(running.unregister)
                            running.unitEnded()
                        }
                    }
                } catch {
                    // Redis unavailable: back off (capped) and try again; never exit.
                    wakeWithin = nil
                    failures += 1
                    logger.warning("claim failed", metadata: ["error": "\(error)", "consecutive": "\(failures)"])
                    try? await Task.sleep(for: .milliseconds(min(5000, 50 << min(failures, 7))))
                }
            }
            let deadline = ContinuousClock.now + configuration.gracePeriod
            while running.count > 0, ContinuousClock.now < deadline, !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
            }
            if running.count > 0 {
                logger.warning("grace period over; returning running jobs to the queue", metadata: ["jobs": "\(running.count)"])
                running.signalAll(.release)
            }
        }
    }

    /// The claimed jobs as units of work: a batch per type and provider when batching, else one job each.
    private func units(_ jobs: [ClaimedJob]) -> [[ClaimedJob]] {
        guard batching else { return jobs.map { [$0] } }
        var order: [String] = []
        var groups: [String: [ClaimedJob]] = [:]
        for job in jobs {
            let key = job.type + "\u{0}" + (job.provider ?? "")
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(job)
        }
        return order.map { groups[$0]! }
    }

    /// Runs jobs claimed as one batch with their type's batch handler, then records each one's
    /// outcome, the batch's leader (which holds the provider slot) last.
    private func runBatch(_ jobs: [ClaimedJob]) async {
        guard let handler = handlers[jobs[0].type] as? any BatchJobHandler else { return }
        let started = ContinuousClock.now
        var results = await handler.handle(batch: jobs)
        if results.count != jobs.count {
            results = Array(repeating: .failure(JobFailure(code: "internal_error", "the batch handler lost a result")), count: jobs.count)
        }
        let elapsed = ContinuousClock.now - started
        for (job, result) in zip(jobs, results).reversed() {
            var logger = logger
            logger[metadataKey: "job"] = "\(job.id)"
            logger[metadataKey: "type"] = "\(job.type)"
            logger[metadataKey: "attempt"] = "\(job.attempt)"
            await record(job, .finished(result), elapsed: elapsed, handler: handler, logger: logger)
        }
    }

    private enum Ending {
        case finished(Result<JobOutcome, any Error>)
        case cancelled
        case released
        case leaseLost
    }

    /// Runs one job, then records how it ended. The handler runs in a task of its own, which a
    /// signal (a cancellation, the end of the grace period, a lost lease) cancels directly, from
    /// whichever thread it comes on.
    private func run(_ job: ClaimedJob, _ running: RunningJobs) async {
        var logger = logger
        logger[metadataKey: "job"] = "\(job.id)"
        logger[metadataKey: "type"] = "\(job.type)"
        logger[metadataKey: "attempt"] = "\(job.attempt)"
        guard let handler = handlers[job.type] else {
            logger.error("no handler for the job type")
            count(type: "unknown", outcome: "failed")
            await record(job, logger: logger) {
                _ = try await queue.fail(
                    job, code: "no_handler", reason: "no worker handles jobs of type '\(job.type)'", decision: .giveUp)
            }
            return
        }
        let started = ContinuousClock.now
        let work = Task { try await handler.handle(job) }
        running.started(work, lease: job.lease)
        let result = await withTaskCancellationHandler { await work.result } onCancel: { work.cancel() }
        let ending: Ending
        switch (result, running.signal(of: job.lease)) {
        case (.success, _): ending = .finished(result)  // done before the signal could stop it
        case (.failure, .cancel?): ending = .cancelled
        case (.failure, .release?): ending = .released
        case (.failure, .leaseLost?): ending = .leaseLost
        // The worker itself was cancelled (another service of the process failed): the
        // handler's CancellationError is no failure of the job.
        case (.failure, nil): ending = Task.isCancelled ? .released : .finished(result)
        }
        await record(job, ending, elapsed: ContinuousClock.now - started, handler: handler, logger: logger)
    }

    /// Counts and times a job's run and records its ending in the queue.
    private func record(_ job: ClaimedJob, _ ending: Ending, elapsed: Duration, handler: any JobHandler, logger: Logger) async {
        Timer(label: "tern_job_duration_seconds", dimensions: [("queue", queue.name.rawValue), ("type", job.type)])
            .recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        switch ending {
        case .finished(.success(let outcome)):
            count(type: job.type, outcome: "completed")
            await record(job, logger: logger) {
                if try await !queue.complete(job, tokens: outcome.tokens) { logger.warning("lease lost before completion was recorded") }
            }
        case .finished(.failure(let error)):
            let failure = error as? JobFailure
            let decision: RetryDecision
            switch failure?.retry {
            case .never: decision = .giveUp
            case .after(let delay): decision = .retry(after: delay)
            case .withBackoff, nil: decision = .retry(after: (handler.retryPolicy ?? configuration.retry).delay(after: job.attempt))
            }
            let reason = failure?.reason ?? String(String(describing: error).prefix(500))
            logger.warning("job attempt failed", metadata: ["error": "\(reason)"])
            count(type: job.type, outcome: decision == .giveUp || job.attempt >= job.maximumAttempts ? "failed" : "retried")
            await record(job, logger: logger) {
                _ = try await queue.fail(job, code: failure?.code ?? "job_failed", reason: reason, decision: decision)
            }
        case .cancelled:
            logger.info("job cancelled")
            count(type: job.type, outcome: "cancelled")
            await record(job, logger: logger) { _ = try await queue.finishCancelled(job) }
        case .released:
            count(type: job.type, outcome: "released")
            await record(job, logger: logger) { _ = try await queue.release(job) }
        case .leaseLost:
            count(type: job.type, outcome: "lease_lost")
            logger.warning("lease lost; another worker has the job")
        }
    }

    private func count(type: String, outcome: String) {
        Counter(label: "tern_jobs_total", dimensions: [("queue", queue.name.rawValue), ("type", type), ("outcome", outcome)]).increment()
    }

    /// Records an outcome, retrying while Redis is unreachable (a restart): giving up early
    /// would make the job run again. After a lease time the lease is gone anyway.
    private func record(_ job: ClaimedJob, logger: Logger, _ body: () async throws -> Void) async {
        let deadline = ContinuousClock.now + queue.lease
        var delay = Duration.milliseconds(50)
        while true {
            guard !Task.isCancelled else {
                logger.warning("worker cancelled before recording the job's outcome; it will run again after its lease")
                return
            }
            do {
                return try await body()
            } catch {
                guard ContinuousClock.now + delay < deadline else {
                    logger.error("could not record the job's outcome; it will run again", metadata: ["error": "\(error)"])
                    return
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }
}

/// The jobs a worker is running, each with the first signal it got and the task running its
/// handler; and the dispatcher's wait for a free slot.
final class RunningJobs: Sendable {
    enum Signal: Sendable {
        case cancel
        case release
        case leaseLost
    }

    private struct Run {
        let job: ClaimedJob
        var signal: Signal?
        var work: Task<JobOutcome, any Error>?
    }

    /// Keyed by lease: after an outage a worker can hold a job's new claim while its old run
    /// (whose lease is gone) still ends.
    private struct State {
        var runs: [String: Run] = [:]
        /// Units of work running: a job, or a batch of jobs run as one.
        var units = 0
        var dispatcher: CheckedContinuation<Void, Never>?
    }
    private let state = NIOLockedValueBox(State())

    /// Units of work running (what the worker's concurrency limits).
    var count: Int { state.withLockedValue { $0.units } }

    func unitStarted() { state.withLockedValue { $0.units += 1 } }

    func unitEnded() {
        let dispatcher = state.withLockedValue { state in
            state.units -= 1
            defer { state.dispatcher = nil }
            return state.dispatcher
        }
        dispatcher?.resume()
    }
    var jobs: [ClaimedJob] { state.withLockedValue { $0.runs.values.map(\.job) } }

    /// A claimed job; an older run of the same job (its lease lost in an outage) is stopped.
    func register(_ job: ClaimedJob) {
        let older = state.withLockedValue { state in
            defer { state.runs[job.lease] = Run(job: job) }
            return state.runs.values.filter { $0.job.id == job.id }.map(\.job.lease)
        }
        older.forEach { signal(lease: $0, .leaseLost) }
    }

    /// The task running the job's handler; cancelled at once if a signal came first.
    func started(_ work: Task<JobOutcome, any Error>, lease: String) {
        let signalled = state.withLockedValue { state in
            state.runs[lease]?.work = work
            return state.runs[lease]?.signal != nil
        }
        if signalled { work.cancel() }
    }

    /// The first signal the run holding `lease` got, if any.
    func signal(of lease: String) -> Signal? {
        state.withLockedValue { $0.runs[lease]?.signal }
    }

    func unregister(_ job: ClaimedJob) {
        state.withLockedValue { $0.runs[job.lease] = nil }
    }

    /// Signals the run holding `lease`: the first signal is kept, and its handler's task
    /// cancelled. The cancellation runs outside the lock, since it runs the cancellation
    /// handlers of the handler's calls (such as aborting its HTTP request) on this thread.
    func signal(lease: String, _ signal: Signal) {
        deliver(signal) { $0.lease == lease }
    }

    /// Signals every run of the job.
    func signal(job id: JobID, _ signal: Signal) {
        deliver(signal) { $0.id == id }
    }

    func signalAll(_ signal: Signal) {
        deliver(signal) { _ in true }
    }

    private func deliver(_ signal: Signal, to matching: (ClaimedJob) -> Bool) {
        let work = state.withLockedValue { state in
            var work: [Task<JobOutcome, any Error>] = []
            for (lease, run) in state.runs where matching(run.job) {
                if run.signal == nil { state.runs[lease]?.signal = signal }
                if let task = run.work { work.append(task) }
            }
            return work
        }
        work.forEach { $0.cancel() }
    }

    /// Returns once fewer than `limit` jobs run (or `wakeDispatcher` is called).
    func waitForFreeSlot(below limit: Int) async {
        await withCheckedContinuation { continuation in
            let free = state.withLockedValue { state in
                if state.units < limit || Task.isShuttingDownGracefully { return true }
                state.dispatcher = continuation
                return false
            }
            if free { continuation.resume() }
        }
    }

    func wakeDispatcher() {
        state.withLockedValue { state in
            defer { state.dispatcher = nil }
            return state.dispatcher
        }?.resume()
    }
}
