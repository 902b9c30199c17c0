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
/// (a chat's tokens); the API reads, resuming after any event id.
public struct JobEvents: Sendable {
    public let client: RedisClient
    /// The queue's key prefix: a job's events share its queue's hash tag.
    let prefix: String
    /// How long a job's events are kept after the last append, in seconds.
    public let retentionSeconds: Int

    public init(queue: RedisJobQueue) {
        client = queue.client
        prefix = queue.prefix
        retentionSeconds = Int(max(1, queue.configuration.eventRetention.components.seconds))
    }

    public func key(_ job: JobID) -> String { prefix + "events:" + job.rawValue }

    /// Appends an event and refreshes the stream's retention, in one round trip.
    @discardableResult
    public func append(_ job: JobID, _ fields: KeyValuePairs<String, String>) async throws -> String {
        var arguments: [any RESPArgument] = [key(job), "*"]
        for (field, value) in fields { arguments += [field, value] }
        let replies = try await client.pipeline([
            RESPCommand("XADD", arguments),
            RESPCommand("EXPIRE", key(job), retentionSeconds),
        ])
        return try replies[0].get().string ?? ""
    }

    /// Reads events after `lastID` ("0" for all), waiting up to `block` for new ones.
    public func read(_ job: JobID, after lastID: String, block: Duration, count: Int = 256) async throws -> [JobEvent] {
        try await client.streamRead(key(job), after: lastID, count: count, block: TimeAmount(block))
    }
}

extension JobEvents {
    /// Every event of a job so far, without waiting.
    public func all(_ job: JobID) async throws -> [JobEvent] {
        try await client.streamRange(key(job))
    }

}
