import Foundation
import NIOConcurrencyHelpers
import TernRedis

/// The queue's rules (leases, attempts, delays, lanes, tenant round-robin, provider limits,
/// idempotency, backlog limit, cancellation) kept in memory, for unit tests of code that uses a
/// queue. One process only, nothing durable.
public final class MemoryJobQueue: JobQueue {
    public let name: QueueName
    public let lease: Duration
    let maximumBacklog: Int?

    private struct Record {
        var job: NewJob
        var state: JobState
        var attempt = 0
        var lease = ""
        /// Claims so far, for lease tokens unique per claim.
        var claims = 0
        var enqueuedAt: Int64
        var readyAt: Int64 = 0
        var startedAt: Int64?
        var finishedAt: Int64?
        var error: String?
        var cancelRequested = false
    }

    private struct State {
        var records: [JobID: Record] = [:]
        /// Per lane: each tenant's ready jobs, and the tenants in round-robin order.
        var ready: [[String: [JobID]]] = [[:], [:]]
        var tenants: [[String]] = [[], []]
        var delayed: [JobID: Int64] = [:]
        var active: [JobID: Int64] = [:]
        var inflight: [String: [JobID: Int64]] = [:]
        /// GCRA: the next free time per provider, for requests and for tokens.
        var requestsNext: [String: Double] = [:]
        var tokensNext: [String: Double] = [:]
        var limits: [String: ProviderLimits] = [:]
        var idempotency: [String: JobID] = [:]
        var totals: [String: Int64] = [:]
        var workers: [String: (expiry: Int64, types: [String])] = [:]
        /// Grows whenever work may have arrived; waiting workers watch it.
        var wakeGeneration = 0
        /// `wakeGeneration` at the last claim: a wait returns at once if work may have arrived
        /// since (as Redis keeps a wake-up for a worker that was not waiting yet).
        var claimedAtGeneration = 0
        var cancelListeners: [UUID: @Sendable (JobID) -> Void] = [:]
    }
    private let state = NIOLockedValueBox(State())

    public init(name: QueueName = QueueName("memory"), lease: Duration = .seconds(30), maximumBacklog: Int? = nil) {
        self.name = name
        self.lease = lease
        self.maximumBacklog = maximumBacklog.flatMap { $0 > 0 ? $0 : nil }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    public func enqueue(_ job: NewJob) async throws -> EnqueueResult {
        try job.validate()
        let now = Self.now()
        return try state.withLockedValue { state -> EnqueueResult in
            if let key = job.idempotencyKey, let existing = state.idempotency[key] { return .existing(existing) }
            if state.records[job.id] != nil { return .existing(job.id) }
            if let maximumBacklog, Self.readyCount(state) + state.delayed.count >= maximumBacklog {
                throw JobQueueError(.backlogFull, "the queue \(name) holds its maximum of \(maximumBacklog) waiting jobs")
            }
            state.records[job.id] = Record(job: job, state: .delayed, enqueuedAt: now)
            if let key = job.idempotencyKey { state.idempotency[key] = job.id }
            state.totals["enqueued", default: 0] += 1
            if job.delay > .zero {
                state.delayed[job.id] = now + job.delay.milliseconds
            } else {
                Self.makeReady(job.id, front: false, now: now, &state)
            }
            return .enqueued(job.id)
        }
    }

    /// A batch claim is claimed as separate jobs here: each takes a slot of its own (stricter).
    public func claim(worker: String, maximum: Int, batch: Bool) async throws -> ClaimResult {
        let now = Self.now()
        return state.withLockedValue { state -> ClaimResult in
            state.claimedAtGeneration = state.wakeGeneration
            Self.recoverExpired(now: now, &state)
            for (id, due) in state.delayed.sorted(by: { $0.value < $1.value }) where due <= now {
                state.delayed[id] = nil
                Self.makeReady(id, front: false, now: now, &state)
            }
            var jobs: [ClaimedJob] = []
            var limitedFor: Int64?
            for lane in 0..<2 {
                var passes = min(state.tenants[lane].count, 32)
                while jobs.count < max(1, maximum), !state.tenants[lane].isEmpty {
                    let tenant = state.tenants[lane].removeFirst()
                    guard let id = state.ready[lane][tenant]?.first, let record = state.records[id] else { continue }
                    let wait = Self.admit(id, record.job, now: now, lease: lease.milliseconds, &state)
                    if wait > 0 {
                        state.tenants[lane].append(tenant)
                        limitedFor = min(limitedFor ?? wait, wait)
                        passes -= 1
                        if passes <= 0 { break }
                        continue
                    }
                    state.ready[lane][tenant]?.removeFirst()
                    if state.ready[lane][tenant]?.isEmpty == false { state.tenants[lane].append(tenant) } else { state.ready[lane][tenant] = nil }
                    var claimed = record
                    claimed.attempt += 1
                    claimed.state = .active
                    claimed.claims += 1
                    claimed.lease = "\(worker)#\(claimed.claims)"
                    claimed.startedAt = now
                    state.records[id] = claimed
                    state.active[id] = now + lease.milliseconds
                    jobs.append(ClaimedJob(
                        id: id, type: record.job.type, tenant: record.job.tenant, payload: record.job.payload, attempt: claimed.attempt,
                        maximumAttempts: record.job.maximumAttempts, provider: record.job.provider, lease: claimed.lease,
                        enqueuedAt: record.enqueuedAt, startedAt: now))
                }
            }
            state.totals["started", default: 0] += Int64(jobs.count)
            let nextDue = state.delayed.values.min().map { max(0, $0 - now) }
            return ClaimResult(jobs: jobs, limitedFor: limitedFor.map { .milliseconds($0) }, nextDueIn: nextDue.map { .milliseconds($0) })
        }
    }

    public func claimAfterWake(worker: String, maximum: Int, batch: Bool, timeout: Duration) async throws -> ClaimResult {
        // A test double: it looks every few milliseconds instead of blocking on a signal.
        let seen = state.withLockedValue { $0.claimedAtGeneration }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, state.withLockedValue({ $0.wakeGeneration }) == seen {
            try await Task.sleep(for: min(.milliseconds(5), deadline - ContinuousClock.now))
        }
        return try await claim(worker: worker, maximum: maximum, batch: batch)
    }

    public func renew(_ jobs: [ClaimedJob]) async throws -> [LeaseRenewal] {
        let expiry = Self.now() + lease.milliseconds
        return state.withLockedValue { state in
            jobs.map { job in
                guard let record = state.records[job.id], record.state == .active, record.lease == job.lease else { return .lost }
                state.active[job.id] = expiry
                if let provider = record.job.provider, state.limits[provider]?.concurrency != nil { state.inflight[provider, default: [:]][job.id] = expiry }
                return record.cancelRequested ? .cancelRequested : .renewed
            }
        }
    }

    public func complete(_ job: ClaimedJob, tokens: Int?) async throws -> Bool {
        finishOwned(job, as: .completed) { record, state in
            if let tokens, let provider = record.job.provider, let tpm = state.limits[provider]?.tokensPerMinute, let next = state.tokensNext[provider] {
                state.tokensNext[provider] = next + Double(tokens - min(record.job.tokens, tpm)) * 60000 / Double(tpm)
            }
        } != nil
    }

    public func fail(_ job: ClaimedJob, code: String, reason: String, decision: RetryDecision) async throws -> JobState? {
        let now = Self.now()
        return state.withLockedValue { state -> JobState? in
            guard var record = state.records[job.id], record.state == .active, record.lease == job.lease else { return nil }
            Self.leaveActive(job.id, record, &state)
            if record.cancelRequested {
                Self.finish(job.id, as: .cancelled, now: now, &state)
                return .cancelled
            }
            record.error = reason
            if case .retry(let delay) = decision, record.attempt < record.job.maximumAttempts {
                record.state = .delayed
                state.records[job.id] = record
                state.delayed[job.id] = now + max(0, delay.milliseconds)
                state.totals["retried", default: 0] += 1
                state.wakeGeneration += 1
                return .delayed
            }
            state.records[job.id] = record
            state.totals["failed:\(code)", default: 0] += 1
            Self.finish(job.id, as: .failed, now: now, &state)
            return .failed
        }
    }

    public func release(_ job: ClaimedJob) async throws -> Bool {
        state.withLockedValue { state in
            guard var record = state.records[job.id], record.state == .active, record.lease == job.lease else { return false }
            Self.leaveActive(job.id, record, &state)
            if record.cancelRequested {
                Self.finish(job.id, as: .cancelled, now: Self.now(), &state)
                return true
            }
            record.attempt -= 1
            state.records[job.id] = record
            Self.makeReady(job.id, front: true, now: Self.now(), &state)
            return true
        }
    }

    public func cancel(_ id: JobID) async throws -> JobState {
        let (result, listeners) = try state.withLockedValue { state -> (JobState, [@Sendable (JobID) -> Void]) in
            guard var record = state.records[id] else { throw JobQueueError(.notFound, "no job \(id)") }
            switch record.state {
            case .ready:
                let lane = record.job.lane.rawValue
                state.ready[lane][record.job.tenant]?.removeAll { $0 == id }
                if state.ready[lane][record.job.tenant]?.isEmpty == true {
                    state.ready[lane][record.job.tenant] = nil
                    state.tenants[lane].removeAll { $0 == record.job.tenant }
                }
            case .delayed:
                state.delayed[id] = nil
            case .active:
                record.cancelRequested = true
                state.records[id] = record
                return (.active, Array(state.cancelListeners.values))
            case .completed, .failed, .cancelled:
                return (record.state, [])
            }
            Self.finish(id, as: .cancelled, now: Self.now(), &state)
            return (.cancelled, [])
        }
        listeners.forEach { $0(id) }
        return result
    }

    public func finishCancelled(_ job: ClaimedJob) async throws -> Bool {
        finishOwned(job, as: .cancelled) { _, _ in } != nil
    }

    public func status(_ id: JobID) async throws -> JobStatus? {
        state.withLockedValue { state in
            state.records[id].map { record in
                JobStatus(
                    id: id, type: record.job.type, tenant: record.job.tenant, state: record.state, attempt: record.attempt,
                    maximumAttempts: record.job.maximumAttempts, enqueuedAt: record.enqueuedAt, startedAt: record.startedAt,
                    finishedAt: record.finishedAt, error: record.error, cancelRequested: record.cancelRequested)
            }
        }
    }

    public func stats() async throws -> QueueStats {
        let now = Self.now()
        return state.withLockedValue { state in
            let records = state.records.values
            func count(_ wanted: JobState) -> Int { records.filter { $0.state == wanted }.count }
            let oldest = state.records.values.filter { $0.state == .ready }.map(\.readyAt).min()
            let live = state.workers.filter { $0.value.expiry >= now }
            return QueueStats(
                ready: Self.readyCount(state), delayed: state.delayed.count, active: state.active.count,
                completed: count(.completed), failed: count(.failed), cancelled: count(.cancelled),
                oldestReadyAge: oldest.map { .milliseconds(max(0, now - $0)) }, totals: state.totals,
                liveWorkers: live.keys.sorted(), handledTypes: Set(live.values.flatMap(\.types)))
        }
    }

    public func backlog() async throws -> Int {
        state.withLockedValue { Self.readyCount($0) + $0.delayed.count }
    }

    public func setLimits(_ limits: ProviderLimits, for provider: String) async throws {
        state.withLockedValue { $0.limits[provider] = limits }
    }

    public func heartbeat(worker: String, types: [String], ttl: Duration) async throws {
        let expiry = Self.now() + ttl.milliseconds
        state.withLockedValue { $0.workers[worker] = (expiry, types) }
    }

    public func followCancellations(_ onCancel: @escaping @Sendable (JobID) -> Void) async {
        let id = UUID()
        state.withLockedValue { $0.cancelListeners[id] = onCancel }
        defer { state.withLockedValue { _ = $0.cancelListeners.removeValue(forKey: id) } }
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
    }

    // MARK: Rules, on the locked state

    private func finishOwned(_ job: ClaimedJob, as final: JobState, _ adjust: (Record, inout State) -> Void) -> JobState? {
        let now = Self.now()
        return state.withLockedValue { state -> JobState? in
            guard let record = state.records[job.id], record.state == .active, record.lease == job.lease else { return nil }
            Self.leaveActive(job.id, record, &state)
            adjust(record, &state)
            Self.finish(job.id, as: final, now: now, &state)
            return final
        }
    }

    private static func readyCount(_ state: State) -> Int {
        state.ready.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
    }

    /// Puts a job in its tenant's ready line and wakes every waiting worker.
    private static func makeReady(_ id: JobID, front: Bool, now: Int64, _ state: inout State) {
        guard var record = state.records[id] else { return }
        let lane = record.job.lane.rawValue
        let tenant = record.job.tenant
        if state.ready[lane][tenant] == nil {
            state.ready[lane][tenant] = []
            state.tenants[lane].append(tenant)
        }
        if front { state.ready[lane][tenant]?.insert(id, at: 0) } else { state.ready[lane][tenant]?.append(id) }
        record.state = .ready
        if !front { record.readyAt = now }  // put back at the front, it keeps its wait
        state.records[id] = record
        state.wakeGeneration += 1
    }

    private static func leaveActive(_ id: JobID, _ record: Record, _ state: inout State) {
        state.active[id] = nil
        if let provider = record.job.provider, state.inflight[provider]?.removeValue(forKey: id) != nil { state.wakeGeneration += 1 }
    }

    private static func finish(_ id: JobID, as final: JobState, now: Int64, _ state: inout State) {
        state.records[id]?.state = final
        state.records[id]?.finishedAt = now
        state.totals[final.rawValue, default: 0] += 1
    }

    private static func recoverExpired(now: Int64, _ state: inout State) {
        for (id, expiry) in state.active where expiry <= now {
            guard var record = state.records[id] else { continue }
            leaveActive(id, record, &state)
            state.totals["stalled", default: 0] += 1
            if record.cancelRequested {
                finish(id, as: .cancelled, now: now, &state)
            } else if record.attempt >= record.job.maximumAttempts {
                record.error = "the worker stopped during attempt \(record.attempt) of \(record.job.maximumAttempts)"
                state.records[id] = record
                state.totals["failed:worker_lost", default: 0] += 1
                finish(id, as: .failed, now: now, &state)
            } else {
                record.error = "the worker stopped during attempt \(record.attempt)"
                state.records[id] = record
                makeReady(id, front: true, now: now, &state)
            }
        }
    }

    /// 0 if a job of the provider may start now (and records the start), else milliseconds to wait.
    private static func admit(_ id: JobID, _ job: NewJob, now: Int64, lease: Int64, _ state: inout State) -> Int64 {
        guard let provider = job.provider, let limits = state.limits[provider] else { return 0 }
        if let cap = limits.concurrency {
            state.inflight[provider] = state.inflight[provider]?.filter { $0.value > now }
            let running = state.inflight[provider] ?? [:]
            if running.count >= cap { return max(1, min(1000, (running.values.min() ?? now) - now)) }
        }
        let clock = Double(now)
        var requestsNext: Double?
        if let rpm = limits.requestsPerMinute {
            let interval = 60000 / Double(rpm)
            let tat = max(state.requestsNext[provider] ?? 0, clock)
            let wait = tat - Double(limits.burst - 1) * interval - clock
            if wait > 0 { return Int64(wait.rounded(.up)) }
            requestsNext = tat + interval
        }
        var tokensNext: Double?
        if let tpm = limits.tokensPerMinute, job.tokens > 0 {
            let interval = 60000 / Double(tpm)
            let tokens = Double(min(job.tokens, tpm))
            let tat = max(state.tokensNext[provider] ?? 0, clock)
            let wait = tat + tokens * interval - 60000 - clock
            if wait > 0 { return Int64(wait.rounded(.up)) }
            tokensNext = tat + tokens * interval
        }
        if limits.concurrency != nil { state.inflight[provider, default: [:]][id] = now + lease }
        if let requestsNext { state.requestsNext[provider] = requestsNext }
        if let tokensNext { state.tokensNext[provider] = tokensNext }
        return 0
    }
}
