/// A durable job queue: what producers (the API) and workers need from it. `RedisJobQueue` is
/// the real one; `MemoryJobQueue` keeps the same rules in memory, for unit tests of code that
/// uses a queue.
///
/// Delivery is at least once: a claimed job is held under a lease that its worker renews; a job
/// whose lease runs out (its worker died) is delivered again, up to its maximum attempts. Only
/// the holder of the current lease can complete, fail or release a job, so a job's outcome is
/// recorded once. Ready jobs are taken interactive lane first, and round-robin across tenants
/// within a lane; a job whose provider is at its concurrency or rate limit waits.
public protocol JobQueue: Sendable {
    var name: QueueName { get }
    /// How long a claim holds without renewal.
    var lease: Duration { get }

    /// Adds a job (or returns the job already enqueued under its idempotency key). Throws
    /// `backlogFull` when the backlog is at its maximum.
    func enqueue(_ job: NewJob) async throws -> EnqueueResult
    /// Claims up to `maximum` ready jobs for `worker`. Returns at once, with no jobs if none
    /// may start now. In a `batch` claim, the jobs of one provider are meant to go upstream as
    /// one request: the first takes the provider's concurrency slot and request-rate allowance,
    /// the others share them (their tokens still count).
    func claim(worker: String, maximum: Int, batch: Bool) async throws -> ClaimResult
    /// Waits until work may have arrived (an enqueue, a freed provider slot) or `timeout`
    /// passed, then claims as `claim` does: what an idle worker calls.
    func claimAfterWake(worker: String, maximum: Int, batch: Bool, timeout: Duration) async throws -> ClaimResult
    /// Extends the leases of claimed jobs (a worker renews all of its jobs in one call).
    func renew(_ jobs: [ClaimedJob]) async throws -> [LeaseRenewal]
    /// Records the job's success; `false` if the lease was no longer the caller's. `tokens`
    /// (the real count) corrects the provider's tokens-per-minute budget.
    func complete(_ job: ClaimedJob, tokens: Int?) async throws -> Bool
    /// Records a failed attempt: retried after a delay if the decision and the attempts allow,
    /// else failed for good (with `code` and `reason` in its `error` event); a job whose
    /// cancellation was requested ends cancelled. Returns the job's new state, `nil` if the lease
    /// was lost.
    func fail(_ job: ClaimedJob, code: String, reason: String, decision: RetryDecision) async throws -> JobState?
    /// Returns a claimed job to the front of the ready line without counting the attempt
    /// (a worker shutting down); a job whose cancellation was requested ends cancelled instead.
    func release(_ job: ClaimedJob) async throws -> Bool
    /// Cancels a job: a waiting one is removed at once; an active one is flagged and its worker
    /// told, and it ends as cancelled when the worker stops it. Returns the state after the call.
    func cancel(_ id: JobID) async throws -> JobState
    /// Records that the worker stopped a job whose cancellation it was told about.
    func finishCancelled(_ job: ClaimedJob) async throws -> Bool
    /// A job's state, or `nil` if unknown (never enqueued, or trimmed by retention).
    func status(_ id: JobID) async throws -> JobStatus?
    /// Depth per state, oldest ready age, totals and live workers.
    func stats() async throws -> QueueStats
    /// Jobs waiting to run (ready plus delayed): a cheap check for admission control.
    func backlog() async throws -> Int
    /// Sets the limits every worker applies to jobs of `provider`.
    func setLimits(_ limits: ProviderLimits, for provider: String) async throws
    /// Announces a live worker and the job types it runs, until `ttl` from now.
    func heartbeat(worker: String, types: [String], ttl: Duration) async throws
    /// Hands `onCancel` the id of each job whose cancellation is requested while it is active,
    /// as it happens, until the calling task is cancelled. `onCancel` may run on an I/O thread:
    /// it must be quick and must not block.
    func followCancellations(_ onCancel: @escaping @Sendable (JobID) -> Void) async
}

extension JobQueue {
    /// Claims up to `maximum` ready jobs, each under the provider limits of its own.
    public func claim(worker: String, maximum: Int) async throws -> ClaimResult {
        try await claim(worker: worker, maximum: maximum, batch: false)
    }

    /// Extends the lease of one claimed job.
    public func renew(_ job: ClaimedJob) async throws -> LeaseRenewal {
        try await renew([job]).first ?? .lost
    }
}
