import Foundation

/// Identifies a job; a UUID in lower-case text form.
public struct JobID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init(_ uuid: UUID = UUID()) {
        // Formatted by hand: Foundation's uuidString goes through printf, on every job.
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(36)
        withUnsafeBytes(of: uuid.uuid) { bytes in
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
                text.append(digits[Int(byte >> 4)])
                text.append(digits[Int(byte & 0x0F)])
            }
        }
        rawValue = String(decoding: text, as: UTF8.self)
    }

    /// Accepts only canonical UUID text (any case), so an id from a client can be used in keys
    /// safely.
    public init?(_ text: String) {
        var canonical = [UInt8]()
        canonical.reserveCapacity(36)
        for (index, byte) in text.utf8.enumerated() {
            guard index < 36 else { return nil }
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard byte == UInt8(ascii: "-") else { return nil }
                canonical.append(byte)
            } else {
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): canonical.append(byte)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): canonical.append(byte + 32)
                default: return nil
                }
            }
        }
        guard canonical.count == 36 else { return nil }
        rawValue = String(decoding: canonical, as: UTF8.self)
    }

    public var uuid: UUID { UUID(uuidString: rawValue)! }  // rawValue is always a UUID
    public var description: String { rawValue }
}

/// The name of a queue; the part inside the Redis Cluster hash tag of its keys.
public struct QueueName: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// Which lane a job waits in: every ready interactive job is taken before any batch job.
public enum JobLane: Int, Sendable, Codable, CaseIterable {
    /// A person is waiting (chat answers).
    case interactive = 0
    /// Nobody is watching (document ingestion, embeddings in bulk).
    case batch = 1
}

/// Where a job is in its life.
public enum JobState: String, Sendable, Codable {
    /// Waiting to be claimed.
    case ready
    /// Waiting for its time (a delayed job, or a retry after its backoff).
    case delayed
    /// Claimed by a worker, under a lease.
    case active
    case completed
    /// Given up: out of attempts, or failed in a way that must not be retried (dead letter).
    case failed
    case cancelled
}

/// A job to enqueue.
public struct NewJob: Sendable {
    public var id: JobID
    /// What kind of work it is; a worker runs it with the handler registered for the type.
    public var type: String
    /// Whose job it is: ready jobs are taken round-robin across tenants.
    public var tenant: String
    public var payload: String
    public var lane: JobLane
    /// Deliveries before the job is given up (a worker dying counts as one).
    public var maximumAttempts: Int
    /// Run no earlier than this from now.
    public var delay: Duration
    /// Enqueueing the same key again (while the first job is retained) returns the first job.
    public var idempotencyKey: String?
    /// The limit group (an upstream provider) whose concurrency and rate limits apply.
    public var provider: String?
    /// The job's expected cost against the provider's tokens-per-minute limit.
    public var tokens: Int

    public init(
        id: JobID = JobID(), type: String, tenant: String, payload: String, lane: JobLane = .interactive,
        maximumAttempts: Int = 3, delay: Duration = .zero, idempotencyKey: String? = nil, provider: String? = nil, tokens: Int = 0
    ) {
        self.id = id
        self.type = type
        self.tenant = tenant
        self.payload = payload
        self.lane = lane
        self.maximumAttempts = maximumAttempts
        self.delay = delay
        self.idempotencyKey = idempotencyKey
        self.provider = provider
        self.tokens = tokens
    }
}

extension NewJob {
    /// Throws `invalidArgument` for a job no queue can hold.
    func validate() throws {
        guard maximumAttempts >= 1 else { throw JobQueueError(.invalidArgument, "maximumAttempts must be at least 1") }
        guard !tenant.isEmpty, !type.isEmpty else { throw JobQueueError(.invalidArgument, "a job needs a type and a tenant") }
    }
}

/// What `enqueue` did.
public enum EnqueueResult: Sendable, Equatable {
    /// The job was added.
    case enqueued(JobID)
    /// A job with the same idempotency key exists already: this is its id.
    case existing(JobID)

    public var id: JobID {
        switch self {
        case .enqueued(let id), .existing(let id): id
        }
    }
}

/// A job a worker has claimed. `lease` proves the claim: only its holder can renew, complete or
/// fail this delivery.
public struct ClaimedJob: Sendable, Hashable {
    public let id: JobID
    public let type: String
    public let tenant: String
    public let payload: String
    /// 1 on first delivery; higher after a retry or after a worker died holding it.
    public let attempt: Int
    public let maximumAttempts: Int
    public let provider: String?
    public let lease: String
    /// When the job was enqueued, in milliseconds since 1970 (the Redis server's clock).
    public let enqueuedAt: Int64
    /// When the job was claimed, same clock.
    public let startedAt: Int64

    public init(
        id: JobID, type: String, tenant: String, payload: String, attempt: Int, maximumAttempts: Int,
        provider: String?, lease: String, enqueuedAt: Int64, startedAt: Int64
    ) {
        self.id = id
        self.type = type
        self.tenant = tenant
        self.payload = payload
        self.attempt = attempt
        self.maximumAttempts = maximumAttempts
        self.provider = provider
        self.lease = lease
        self.enqueuedAt = enqueuedAt
        self.startedAt = startedAt
    }
}

/// The answer to a claim.
public struct ClaimResult: Sendable {
    public var jobs: [ClaimedJob]
    /// When jobs are ready but held back by a provider's limit: how long until one may start.
    public var limitedFor: Duration?
    /// When the next delayed job (or retry) comes due.
    public var nextDueIn: Duration?

    public init(jobs: [ClaimedJob], limitedFor: Duration? = nil, nextDueIn: Duration? = nil) {
        self.jobs = jobs
        self.limitedFor = limitedFor
        self.nextDueIn = nextDueIn
    }

    /// The longest a worker with free slots should wait before claiming again, even if nothing
    /// wakes it: until a limit frees up or a delayed job comes due.
    public var retryIn: Duration? {
        switch (limitedFor, nextDueIn) {
        case (let a?, let b?): min(a, b)
        case (let a?, nil): a
        case (nil, let b?): b
        case (nil, nil): nil
        }
    }
}

/// What the holder of a lease learns when renewing it.
public enum LeaseRenewal: Sendable, Equatable {
    case renewed
    /// Renewed, but the job was cancelled: stop and report it with `cancelled`.
    case cancelRequested
    /// The lease is no longer this worker's (it expired and another worker took the job).
    case lost
}

/// How a failed attempt continues.
public enum RetryDecision: Sendable, Equatable {
    /// Run again after this delay (if attempts remain).
    case retry(after: Duration)
    /// Give up now: the job fails with the reason (dead letter).
    case giveUp
}

/// A job's state and history, for status pages and the admin view.
public struct JobStatus: Sendable, Equatable {
    public let id: JobID
    public let type: String
    public let tenant: String
    public let state: JobState
    public let attempt: Int
    public let maximumAttempts: Int
    public let enqueuedAt: Int64
    public let startedAt: Int64?
    public let finishedAt: Int64?
    /// Why it failed, for failed jobs (and the last error of a job waiting for a retry).
    public let error: String?
    public let cancelRequested: Bool

    public init(
        id: JobID, type: String, tenant: String, state: JobState, attempt: Int, maximumAttempts: Int,
        enqueuedAt: Int64, startedAt: Int64?, finishedAt: Int64?, error: String?, cancelRequested: Bool
    ) {
        self.id = id
        self.type = type
        self.tenant = tenant
        self.state = state
        self.attempt = attempt
        self.maximumAttempts = maximumAttempts
        self.enqueuedAt = enqueuedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.error = error
        self.cancelRequested = cancelRequested
    }
}

/// Limits shared by every worker of a queue for one provider, enforced before a job starts.
/// Jobs over a limit wait in the queue; they never fail for it.
public struct ProviderLimits: Sendable, Equatable, Codable {
    /// Jobs of the provider running at once, across all workers.
    public var concurrency: Int?
    /// Job starts per minute, spread evenly (at most `burst` back to back).
    public var requestsPerMinute: Int?
    /// Tokens per minute, by the tokens each job declares.
    public var tokensPerMinute: Int?
    /// How many starts may come back to back before the per-minute pace applies.
    public var burst: Int

    public init(concurrency: Int? = nil, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, burst: Int = 1) {
        self.concurrency = concurrency
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.burst = burst
    }
}

/// Counts that describe a queue, for metrics, autoscaling and the admin view.
public struct QueueStats: Sendable, Equatable {
    public var ready: Int
    public var delayed: Int
    public var active: Int
    public var completed: Int
    public var failed: Int
    public var cancelled: Int
    /// How long the oldest ready job has waited, if any.
    public var oldestReadyAge: Duration?
    /// Totals since the queue was created.
    public var totals: [String: Int64]
    /// Workers that announced themselves within the last heartbeat window.
    public var liveWorkers: [String]
    /// Job types the live workers can run.
    public var handledTypes: Set<String>

    public init(
        ready: Int = 0, delayed: Int = 0, active: Int = 0, completed: Int = 0, failed: Int = 0, cancelled: Int = 0,
        oldestReadyAge: Duration? = nil,
        totals: [String: Int64] = [:], liveWorkers: [String] = [], handledTypes: Set<String> = []
    ) {
        self.ready = ready
        self.delayed = delayed
        self.active = active
        self.completed = completed
        self.failed = failed
        self.cancelled = cancelled
        self.oldestReadyAge = oldestReadyAge
        self.totals = totals
        self.liveWorkers = liveWorkers
        self.handledTypes = handledTypes
    }
}

extension QueueStats {
    /// What needs a person's attention: work that is waiting with nobody to run it, and jobs
    /// that failed because no worker runs their type. Empty when all is well.
    public var warnings: [String] {
        var warnings: [String] = []
        if ready + delayed > 0 && liveWorkers.isEmpty {
            warnings.append("\(ready + delayed) jobs are waiting and no worker is alive")
        }
        if let unhandled = totals["failed:no_handler"], unhandled > 0 {
            warnings.append("\(unhandled) jobs failed because no worker handles their type (live workers handle: \(handledTypes.sorted().joined(separator: ", ")))")
        }
        return warnings
    }
}

/// Why the queue refused a call.
public struct JobQueueError: Error, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The backlog is at its configured maximum: try again later.
        case backlogFull
        /// No such job (or it was trimmed by retention).
        case notFound
        /// The job is not in a state that allows this.
        case invalidState
        case invalidArgument
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "queue \(code.rawValue): \(message)" }
}
