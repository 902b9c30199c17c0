import Logging
import NIOCore
import TernRedis

/// One event in a job's event stream: a stream entry, whose id clients resume after.
public typealias JobEvent = StreamEntry

extension StreamEntry {
    /// The event's type (`queued`, `token`, `completed`, ...).
    public var type: String { fields["type"] ?? "" }
}

/// The per-job event streams of a queue. The queue itself writes `queued` (before the job can
/// be claimed), `completed`, `error` (failed) and `cancelled`; workers append progress and output
/// (a chat's tokens); the API reads, resuming after any event id. Every append is announced on
/// the stream's own pub/sub channel (the stream's key), so a reader waits without holding a
/// Redis connection of its own: thousands of idle readers share one subscriber connection.
public struct JobEvents: Sendable {
    public let client: RedisClient
    /// The connection readers wait on (connected on first use).
    let subscriber: RedisSubscriber
    /// The queue's key prefix: a job's events share its queue's hash tag.
    let prefix: String
    /// How long a job's events are kept after the last append, in seconds.
    public let retentionSeconds: Int

    public init(queue: RedisJobQueue) {
        client = queue.client
        subscriber = RedisSubscriber(configuration: queue.client.configuration, logger: queue.client.logger)
        prefix = queue.prefix
        retentionSeconds = Int(max(1, queue.configuration.eventRetention.components.seconds))
    }

    public func key(_ job: JobID) -> String { prefix + "events:" + job.rawValue }

    /// Appends an event, refreshes the stream's retention and announces it, in one round trip.
    @discardableResult
    public func append(_ job: JobID, _ fields: KeyValuePairs<String, String>) async throws -> String {
        var arguments: [any RESPArgument] = [key(job), "*"]
        for (field, value) in fields { arguments += [field, value] }
        let replies = try await client.pipeline([
            RESPCommand("XADD", arguments),
            RESPCommand("EXPIRE", key(job), retentionSeconds),
            RESPCommand("PUBLISH", key(job), "1"),
        ])
        return try replies[0].get().string ?? ""
    }

    /// Reads events after `lastID` ("0" for all), waiting up to `block` for new ones.
    public func read(_ job: JobID, after lastID: String, block: Duration, count: Int = 256) async throws -> [JobEvent] {
        try await client.streamRead(key(job), after: lastID, count: count, block: TimeAmount(block))
    }
}

extension JobEvents {
    /// Follows a job's events after `lastID` ("0": from the start), in order: `onBatch` gets each
    /// batch of new events and returns whether to go on; `onIdle` runs whenever nothing came for
    /// `idle` (so at most `idle` passes without one or the other) and returns whether to go on.
    /// Between batches the reader waits on the stream's announcements; before each `onIdle` it
    /// reads once more, so an announcement lost while the subscriber reconnected delays events
    /// by at most `idle`.
    public func follow(
        _ job: JobID, after lastID: String, idle: Duration,
        onBatch: ([JobEvent]) async throws -> Bool,
        onIdle: () async throws -> Bool
    ) async throws {
        try await subscriber.subscribe(to: [key(job)], buffer: 1) { announcements in
            // One stream of wake-ups: announcements (true), and ticks twice per idle interval (false).
            let (wakeups, wake) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in announcements { wake.yield(true) }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: idle / 2)
                        wake.yield(false)
                    }
                }
                defer { group.cancelAll() }
                var lastID = lastID
                var lastActivity = ContinuousClock.now
                var iterator = wakeups.makeAsyncIterator()
                var wakeup: Bool? = true  // read once before waiting
                while let announced = wakeup {
                    // Read on an announcement, and on a tick once it has been quiet for half the interval.
                    if announced || ContinuousClock.now - lastActivity >= idle / 2 {
                        let batch = try await client.streamRead(key(job), after: lastID, count: 256)
                        lastActivity = .now
                        if let last = batch.last {
                            lastID = last.id
                            guard try await onBatch(batch) else { return }
                            if batch.count == 256 {  // more may be waiting
                                wakeup = true
                                continue
                            }
                        } else if !announced {
                            guard try await onIdle() else { return }
                        }
                    }
                    wakeup = await iterator.next()
                }
            }
        }
    }

    /// Every event of a job so far, without waiting.
    public func all(_ job: JobID) async throws -> [JobEvent] {
        try await client.streamRange(key(job))
    }

}
