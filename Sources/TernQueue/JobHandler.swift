import TernRedis

/// Runs the jobs of one type.
public protocol JobHandler: Sendable {
    /// Runs one job. Returning completes it (with the tokens it really used, if known: they
    /// correct the provider's token budget). Throwing fails the attempt: a `JobFailure` says
    /// whether to retry; any other error is retried with the worker's backoff. A cancelled job
    /// (or a worker shutting down past its grace period) arrives as task cancellation.
    func handle(_ job: ClaimedJob) async throws -> JobOutcome

    /// The backoff for this job type's failed attempts; `nil` (the default) uses the worker's.
    var retryPolicy: RetryPolicy? { get }
}

extension JobHandler {
    public var retryPolicy: RetryPolicy? { nil }
}

/// Runs jobs of one type together: a worker whose handlers all batch claims up to its batch
/// size at once, and runs the jobs of one type and provider as one unit of its concurrency
/// (one upstream request: the queue gives the batch one provider slot).
public protocol BatchJobHandler: JobHandler {
    /// Runs the jobs as one; returns each job's result, in their order. A job's failure is its
    /// result (as `handle(_:)` would throw it). A batch runs to its end: a cancellation asked
    /// for meanwhile is not seen.
    func handle(batch: [ClaimedJob]) async -> [Result<JobOutcome, any Error>]
}

extension BatchJobHandler {
    public func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        try await handle(batch: [job]).first?.get() ?? JobOutcome()
    }
}

/// What a finished job reports.
public struct JobOutcome: Sendable, Equatable {
    /// Tokens the job really used, if it called a model.
    public var tokens: Int?

    public init(tokens: Int? = nil) { self.tokens = tokens }
}

/// A failure that says how the job should go on.
public struct JobFailure: Error, Equatable, CustomStringConvertible {
    public enum Retry: Sendable, Equatable {
        /// With the worker's exponential backoff.
        case withBackoff
        /// After this long (an upstream's Retry-After).
        case after(Duration)
        /// Not at all: the job fails now (bad input, a refusal).
        case never
    }

    /// A stable machine code (`upstream_error`, `invalid_job`, ...), in the job's `error` event.
    public let code: String
    /// Safe to show the job's owner; stored as the job's error.
    public let reason: String
    public let retry: Retry

    public init(code: String = "job_failed", _ reason: String, retry: Retry = .withBackoff) {
        self.code = code
        self.reason = reason
        self.retry = retry
    }

    public var description: String { reason }
}

/// Exponential backoff with jitter: attempt n waits about `initial` × 2^(n-1), at most `maximum`,
/// spread by ±`jitter` so that jobs that failed together do not retry together.
public struct RetryPolicy: Sendable {
    public var initial: Duration = .seconds(1)
    public var maximum: Duration = .seconds(60)
    /// Fraction of the delay to spread it by (0.2: ±20%).
    public var jitter: Double = 0.2

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(60), jitter: Double = 0.2) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The wait before the attempt after `attempt`.
    public func delay(after attempt: Int) -> Duration {
        let base = min(Double(initial.milliseconds) * pow2(max(0, attempt - 1)), Double(maximum.milliseconds))
        let spread = base * jitter * Double.random(in: -1...1)
        return .milliseconds(Int64(max(0, base + spread)))
    }

    private func pow2(_ exponent: Int) -> Double { exponent >= 62 ? .greatestFiniteMagnitude : Double(1 << exponent) }
}
