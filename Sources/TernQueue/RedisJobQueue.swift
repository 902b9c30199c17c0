import Foundation
import Logging
import NIOCore
import TernRedis

/// The job queue on Redis: every state change is one Lua script, all keys of a queue share the
/// Redis Cluster hash tag `{NAME}`, and nothing needs a scheduled clean-up: expired leases and
/// due delayed jobs are handled by the next claim. `backlogKey` is a list whose length is
/// exactly the number of ready jobs, for autoscalers (KEDA's Redis list scaler).
public struct RedisJobQueue: JobQueue {
    public struct Configuration: Sendable {
        /// How long a claim holds without renewal; a worker renews at a third of it.
        public var lease: Duration = .seconds(30)
        /// Ready plus delayed jobs beyond which `enqueue` fails with `backlogFull`; `nil`: no limit.
        public var maximumBacklog: Int?
        /// How long a job's event stream is kept after its last event.
        public var eventRetention: Duration = .seconds(24 * 3600)
        /// How long completed, failed and cancelled jobs are kept (and idempotency keys honoured).
        public var finishedRetention: Duration = .seconds(24 * 3600)
        /// At most this many completed (and as many failed, and cancelled) jobs are kept.
        public var finishedKeep: Int = 100_000

        public init() {}
    }

    public let name: QueueName
    public let client: RedisClient
    public let configuration: Configuration
    public var lease: Duration { configuration.lease }
    /// Concurrent enqueues and completions go to Redis together, one script run per batch.
    private let enqueues: CallCoalescer<NewJob, Result<EnqueueResult, JobQueueError>>
    private let completions: CallCoalescer<(job: ClaimedJob, tokens: Int?), Bool>

    public init(name: QueueName, client: RedisClient, configuration: Configuration = .init()) {
        self.name = name
        self.client = client
        self.configuration = configuration
        let prefix = Self.prefix(name)
        enqueues = CallCoalescer { jobs in try await Self.enqueue(jobs, client: client, prefix: prefix, configuration: configuration) }
        completions = CallCoalescer { finished in
            var arguments = Self.retentions(configuration)
            for (job, tokens) in finished { arguments += [job.id.rawValue, job.lease, tokens ?? -1] }
            let reply = try await client.run(Self.completeScript, keys: [prefix], arguments: arguments, waitingThroughCancellation: true)
            return (reply.array ?? []).map { $0.int == 1 }
        }
    }

    static func prefix(_ name: QueueName) -> String { "tern:{\(name.rawValue)}:" }

    /// The prefix of every key of the queue, with its hash tag.
    public var prefix: String { Self.prefix(name) }
    /// A list whose length is the ready backlog.
    public var backlogKey: String { prefix + "backlog" }

    private var retentions: [any RESPArgument] { Self.retentions(configuration) }

    private static func retentions(_ configuration: Configuration) -> [any RESPArgument] {
        [configuration.eventRetention.milliseconds, configuration.finishedRetention.milliseconds, configuration.finishedKeep]
    }

    private func run(_ script: RedisScript, _ arguments: [any RESPArgument]) async throws -> RESPValue {
        try await client.run(script, keys: [prefix], arguments: arguments)
    }

    public func enqueue(_ job: NewJob) async throws -> EnqueueResult {
        try job.validate()
        return try await enqueues.call(job).get()
    }

    private static func enqueue(
        _ jobs: [NewJob], client: RedisClient, prefix: String, configuration: Configuration
    ) async throws -> [Result<EnqueueResult, JobQueueError>] {
        var arguments: [any RESPArgument] = [
            configuration.maximumBacklog ?? 0, configuration.eventRetention.milliseconds, configuration.finishedRetention.milliseconds,
        ]
        for job in jobs {
            arguments += [
                job.id.rawValue, job.type, job.tenant, job.lane.rawValue, job.payload, job.maximumAttempts,
                job.delay.milliseconds, job.idempotencyKey ?? "", job.provider ?? "", job.tokens,
            ]
        }
        // A lone enqueue is sent by its caller's task (`CallCoalescer`): it learns the outcome even if cancelled.
        let reply = try await client.run(enqueueScript, keys: [prefix], arguments: arguments, waitingThroughCancellation: true)
        guard let values = reply.array, values.count == jobs.count * 2 else {
            throw RedisError(.unexpectedReply, "enqueue returned an unexpected reply")
        }
        return stride(from: 0, to: values.count, by: 2).map { index in
            switch values[index].string {
            case "enqueued": return .success(.enqueued(jobs[index / 2].id))
            case "existing": return values[index + 1].string.flatMap(JobID.init).map { .success(.existing($0)) }
                ?? .failure(JobQueueError(.invalidState, "enqueue returned no id"))
            default:
                return .failure(JobQueueError(.backlogFull, "the queue holds its maximum of \(configuration.maximumBacklog ?? 0) waiting jobs"))
            }
        }
    }

    public func claim(worker: String, maximum: Int, batch: Bool) async throws -> ClaimResult {
        try Self.claimResult(await run(Self.claimScript, claimArguments(worker: worker, maximum: maximum, batch: batch)))
    }

    /// BLPOP on the wake-up list and the claim, sent together on a dedicated connection: the
    /// server runs the claim as soon as the wake-up (or the timeout) releases the BLPOP, without
    /// a round trip back to the worker first. The claim's answer is what counts (the BLPOP only
    /// waits); a NOSCRIPT answer (a restarted server) sends the claim again the usual way, which
    /// loads the script.
    public func claimAfterWake(worker: String, maximum: Int, batch: Bool, timeout: Duration) async throws -> ClaimResult {
        let seconds = max(0.001, Double(timeout.milliseconds) / 1000)
        let arguments = claimArguments(worker: worker, maximum: maximum, batch: batch)
        let replies = try await client.withDedicatedConnection { connection in
            try await connection.pipeline(
                [RESPCommand("BLPOP", prefix + "wake", String(seconds)), RESPCommand("EVALSHA", [Self.claimScript.sha1, 1, prefix] + arguments)],
                blockingFor: .milliseconds(timeout.milliseconds))
        }
        guard replies.count == 2 else { throw RedisError(.unexpectedReply, "claim returned an unexpected reply") }
        switch replies[1] {
        case .success(let claimed):
            return try Self.claimResult(claimed)
        case .failure(let error) where error.code == .server && error.message.hasPrefix("NOSCRIPT"):
            return try await claim(worker: worker, maximum: maximum, batch: batch)
        case .failure(let error):
            throw error
        }
    }

    private func claimArguments(worker: String, maximum: Int, batch: Bool) -> [any RESPArgument] {
        [worker, max(1, maximum), lease.milliseconds] + retentions + [batch ? "1" : "0"]
    }

    private static func claimResult(_ reply: RESPValue) throws -> ClaimResult {
        guard let values = reply.array, values.count >= 2, (values.count - 2) % 10 == 0 else {
            throw RedisError(.unexpectedReply, "claim returned an unexpected reply")
        }
        var jobs: [ClaimedJob] = []
        for start in stride(from: 2, to: values.count, by: 10) {
            let f = values[start..<(start + 10)].map { $0.string ?? "" }
            guard let id = JobID(f[0]) else { continue }
            jobs.append(ClaimedJob(
                id: id, type: f[1], tenant: f[2], payload: f[3], attempt: Int(f[4]) ?? 1, maximumAttempts: Int(f[5]) ?? 1,
                provider: f[6].isEmpty ? nil : f[6], lease: f[7], enqueuedAt: Int64(f[8]) ?? 0, startedAt: Int64(f[9]) ?? 0))
        }
        func duration(_ value: RESPValue) -> Duration? {
            guard let ms = value.int, ms >= 0 else { return nil }
            return .milliseconds(ms)
        }
        return ClaimResult(jobs: jobs, limitedFor: duration(values[0]), nextDueIn: duration(values[1]))
    }

    public func renew(_ jobs: [ClaimedJob]) async throws -> [LeaseRenewal] {
        guard !jobs.isEmpty else { return [] }
        var arguments: [any RESPArgument] = [lease.milliseconds]
        for job in jobs { arguments += [job.id.rawValue, job.lease] }
        let replies = try await run(Self.renewScript, arguments).array ?? []
        guard replies.count == jobs.count else { throw RedisError(.unexpectedReply, "renew returned \(replies.count) of \(jobs.count) answers") }
        return replies.map { reply in
            switch reply.int {
            case 0: .renewed
            case 1: .cancelRequested
            default: .lost
            }
        }
    }

    public func complete(_ job: ClaimedJob, tokens: Int?) async throws -> Bool {
        try await completions.call((job, tokens))
    }

    public func fail(_ job: ClaimedJob, code: String, reason: String, decision: RetryDecision) async throws -> JobState? {
        let delay: Int64
        switch decision {
        case .retry(let after): delay = max(0, after.milliseconds)
        case .giveUp: delay = -1
        }
        let reply = try await run(Self.failScript, [job.id.rawValue, job.lease, code, reason, delay] + retentions)
        return reply.string.flatMap(JobState.init)
    }

    public func release(_ job: ClaimedJob) async throws -> Bool {
        try await run(Self.releaseScript, [job.id.rawValue, job.lease] + retentions).int == 1
    }

    public func cancel(_ id: JobID) async throws -> JobState {
        let reply = try await run(Self.cancelScript, [id.rawValue] + retentions)
        guard let state = reply.string.flatMap(JobState.init) else { throw JobQueueError(.notFound, "no job \(id)") }
        return state
    }

    public func finishCancelled(_ job: ClaimedJob) async throws -> Bool {
        try await run(Self.finishCancelledScript, [job.id.rawValue, job.lease] + retentions).int == 1
    }

    public func status(_ id: JobID) async throws -> JobStatus? {
        let fields = try await client.hashGetAll(prefix + "job:" + id.rawValue)
        guard let state = fields["state"].flatMap(JobState.init) else { return nil }
        return JobStatus(
            id: id, type: fields["type"] ?? "", tenant: fields["tenant"] ?? "", state: state,
            attempt: Int(fields["attempt"] ?? "") ?? 0, maximumAttempts: Int(fields["maxAttempts"] ?? "") ?? 0,
            enqueuedAt: Int64(fields["enqueuedAt"] ?? "") ?? 0, startedAt: fields["startedAt"].flatMap { Int64($0) },
            finishedAt: fields["finishedAt"].flatMap { Int64($0) }, error: fields["error"].flatMap { $0.isEmpty ? nil : $0 },
            cancelRequested: fields["cancel"] == "1")
    }

    public func stats() async throws -> QueueStats {
        let reply = try await run(Self.statsScript, [])
        guard let v = reply.array, v.count == 11 else { throw RedisError(.unexpectedReply, "stats returned an unexpected reply") }
        func count(_ index: Int) -> Int { Int(v[index].int ?? 0) }
        let oldest = v[6].int ?? -1
        let now = v[7].int ?? 0
        let totals = v[8].fieldDictionary.compactMapValues { Int64($0) }
        let live = (v[9].array ?? []).compactMap(\.string)
        let types = Set((v[10].array ?? []).compactMap(\.string).flatMap { $0.split(separator: ",").map(String.init) })
        return QueueStats(
            ready: count(0), delayed: count(1), active: count(2), completed: count(3), failed: count(4), cancelled: count(5),
            oldestReadyAge: oldest >= 0 ? .milliseconds(max(0, now - oldest)) : nil,
            totals: totals, liveWorkers: live, handledTypes: types)
    }

    public func backlog() async throws -> Int {
        let replies = try await client.pipeline([RESPCommand("LLEN", prefix + "backlog"), RESPCommand("ZCARD", prefix + "delayed")])
        return try replies.reduce(0) { $0 + Int(try $1.get().int ?? 0) }
    }

    public func setLimits(_ limits: ProviderLimits, for provider: String) async throws {
        let key = prefix + "limits"
        let fields: [(String, Int?)] = [
            ("concurrency", limits.concurrency), ("rpm", limits.requestsPerMinute), ("tpm", limits.tokensPerMinute), ("burst", limits.burst),
        ]
        var commands: [RESPCommand] = []
        for (field, value) in fields {
            if let value {
                commands.append(RESPCommand("HSET", key, "\(provider):\(field)", max(1, value)))
            } else {
                commands.append(RESPCommand("HDEL", key, "\(provider):\(field)"))
            }
        }
        for result in try await client.pipeline(commands) { _ = try result.get() }
    }

    public func heartbeat(worker: String, types: [String], ttl: Duration) async throws {
        _ = try await run(Self.heartbeatScript, [worker, types.sorted().joined(separator: ","), ttl.milliseconds])
    }

    public func followCancellations(_ onCancel: @escaping @Sendable (JobID) -> Void) async {
        let subscriber = RedisSubscriber(configuration: client.configuration, logger: client.logger)
        defer { subscriber.shutdown() }
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                // Each id is handed over on the connection's event loop, so that stopping the
                // job never waits for a free thread of the task pool, however busy it is.
                try await subscriber.subscribe(to: [prefix + "cancel"], onMessage: { message in
                    if let id = JobID(String(buffer: message.payload)) { onCancel(id) }
                }) {
                    delay = .milliseconds(100)
                    while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                }
            } catch {
                guard !Task.isCancelled else { return }
                client.logger.warning("cancel subscription failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
