import Logging
import NIOConcurrencyHelpers
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
}

extension JobEvents {
    /// Follows a job's events after `lastID` ("0": from the start), in order: `onBatch` gets each
    /// batch of new events and returns whether to go on; `onIdle` runs once nothing came for half
    /// of `idle` (so never more than `idle` passes without one or the other) and returns whether
    /// to go on. Between batches the reader waits on the stream's announcements; before each
    /// `onIdle` it reads once more, so an announcement lost while the subscriber reconnected
    /// delays events by at most `idle`.
    public func follow(
        _ job: JobID, after lastID: String, idle: Duration,
        onBatch: ([JobEvent]) async throws -> Bool,
        onIdle: () async throws -> Bool
    ) async throws {
        try await subscriber.subscribe(to: [key(job)], buffer: 1) { announcements in
            // Wake-ups come from announcements and from ticks twice per idle interval; a tick
            // never hides an announcement, which is also noted in `announced`.
            let announced = NIOLockedValueBox(true)  // read once before waiting
            let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in announcements {
                        announced.withLockedValue { $0 = true }
                        wake.yield()
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: idle / 2)
                        wake.yield()
                    }
                }
                defer { group.cancelAll() }
                var lastID = lastID
                // When the caller last heard something: events or an idle call.
                var lastHeard = ContinuousClock.now
                var iterator = wakeups.makeAsyncIterator()
                repeat {
                    let wasAnnounced = announced.withLockedValue { value in
                        defer { value = false }
                        return value
                    }
                    let quiet = ContinuousClock.now - lastHeard >= idle / 2
                    guard wasAnnounced || quiet else { continue }
                    // Before an idle call, read once more: an announcement may have been lost
                    // while the subscriber reconnected.
                    while true {
                        let batch = try await client.streamRead(key(job), after: lastID, count: 256)
                        guard let last = batch.last else { break }
                        lastID = last.id
                        lastHeard = .now
                        guard try await onBatch(batch) else { return }
                        if batch.count < 256 { break }
                    }
                    if ContinuousClock.now - lastHeard >= idle / 2 {
                        lastHeard = .now
                        guard try await onIdle() else { return }
                    }
                } while await iterator.next() != nil
            }
        }
    }

    /// Every event of a job so far, without waiting.
    public func all(_ job: JobID) async throws -> [JobEvent] {
        try await client.streamRange(key(job))
    }

}
