import Foundation
import Logging
import NIOCore
import TernRedis

/// Identifies a job; a UUID in text form.
public struct JobID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(_ uuid: UUID = UUID()) { rawValue = uuid.uuidString.lowercased() }
    /// Accepts only canonical UUID text, so an id from a client can be used in keys safely.
    public init?(_ text: String) {
        guard let uuid = UUID(uuidString: text) else { return nil }
        self.init(uuid)
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

/// A job claimed by a worker.
public struct ClaimedJob: Sendable {
    public let id: JobID
    public let type: String
    public let payload: String
    /// 1 on first delivery; higher when the job is delivered again after its worker died.
    public let attempt: Int
    /// The entry id in the queue's stream; identifies this delivery.
    let entryID: String
}

/// A durable job queue on a Redis stream with a consumer group.
///
/// A claimed job stays in the group's pending list under its worker's name until it is
/// acknowledged. The worker renews its lease while it works; a job whose lease runs out (its
/// worker was killed) is taken over by the next worker that asks for work. Claiming blocks on
/// the server (XREADGROUP BLOCK), with no polling.
public struct JobQueue: Sendable {
    public let name: QueueName
    public let client: RedisClient
    /// How long a claimed job may go without a lease renewal before another worker takes it.
    public let lease: Duration

    static let group = "workers"

    public init(name: QueueName, client: RedisClient, lease: Duration = .seconds(30)) {
        self.name = name
        self.client = client
        self.lease = lease
    }

    /// The stream holding the queue's jobs.
    public var streamKey: String { "tern:{\(name.rawValue)}:jobs" }

    /// Creates the stream and its consumer group if they do not exist.
    public func prepare() async throws {
        try await client.streamCreateGroup(streamKey, group: Self.group, startingAt: "0")
    }

    /// Adds a job to the queue.
    public func enqueue(id: JobID, type: String, payload: String) async throws {
        try await client.streamAdd(streamKey, [("id", id.rawValue), ("type", type), ("payload", payload)])
    }

    /// Waits up to `block` for a job and claims it for `consumer`: first a job whose lease has
    /// expired, then a new one. Returns `nil` when none arrived in time.
    public func claim(consumer: String, block: Duration) async throws -> ClaimedJob? {
        if let orphan = try await claimExpired(consumer: consumer) { return orphan }
        let entries = try await client.streamReadGroup(streamKey, group: Self.group, consumer: consumer, count: 1, block: TimeAmount(block))
        guard let entry = entries.first else { return nil }
        return try await job(from: entry, attempt: 1)
    }

    /// Renews the lease on a job. Returns `false` if the job is no longer this worker's (its lease
    /// expired and another worker took it, or it was acknowledged).
    public func renew(_ job: ClaimedJob, consumer: String) async throws -> Bool {
        try await client.run(Self.renewScript, keys: [streamKey], arguments: [Self.group, consumer, job.entryID]).int == 1
    }

    /// Marks a job done and removes it, if this worker still holds it.
    @discardableResult
    public func acknowledge(_ job: ClaimedJob, consumer: String) async throws -> Bool {
        try await client.run(Self.acknowledgeScript, keys: [streamKey], arguments: [Self.group, consumer, job.entryID]).int == 1
    }

    /// Number of jobs waiting to be claimed plus jobs being worked on.
    public func depth() async throws -> Int {
        Int(try await client.send("XLEN", streamKey).int ?? 0)
    }

    /// Takes over one job whose lease expired. XAUTOCLAIM looks at ten pending entries per call,
    /// so it follows the cursor (bounded) until it finds one or has seen the whole pending list.
    private func claimExpired(consumer: String) async throws -> ClaimedJob? {
        var cursor = "0-0"
        for _ in 0..<Self.maximumRecoveryCalls {
            let claimed = try await client.streamAutoClaim(
                streamKey, group: Self.group, consumer: consumer, minimumIdle: lease, start: cursor, count: 1)
            if let entry = claimed.entries.first {
                let pending = try await client.streamPending(streamKey, group: Self.group, from: entry.id, to: entry.id, count: 1)
                return try await job(from: entry, attempt: Int(pending.first?.deliveries ?? 2))
            }
            cursor = claimed.next
            if cursor == "0-0" { return nil }
        }
        return nil
    }

    /// Most XAUTOCLAIM calls in one claim: up to 1,000 pending jobs looked at.
    static let maximumRecoveryCalls = 100

    /// Reads a claimed entry. An entry that is not a job (written by something else, or corrupt)
    /// can never succeed: it is acknowledged and deleted, and the claim reports no job.
    private func job(from entry: StreamEntry, attempt: Int) async throws -> ClaimedJob? {
        let (entryID, fields) = (entry.id, entry.fields)
        guard let idText = fields["id"], let id = JobID(idText), let type = fields["type"], let payload = fields["payload"] else {
            client.logger.error("discarding a queue entry that is not a job", metadata: ["queue": "\(name)", "entry": "\(entryID)"])
            _ = try await client.pipeline([RESPCommand("XACK", streamKey, Self.group, entryID), RESPCommand("XDEL", streamKey, entryID)])
            return nil
        }
        return ClaimedJob(id: id, type: type, payload: payload, attempt: attempt, entryID: entryID)
    }

    /// KEYS[1] stream; ARGV group, consumer, entry id. Resets the idle time if the caller owns it.
    static let renewScript = RedisScript("""
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
        if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
        return 1
        """)

    /// KEYS[1] stream; ARGV group, consumer, entry id. Acknowledges and deletes if the caller owns it.
    static let acknowledgeScript = RedisScript("""
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
        if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
        redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
        redis.call('XDEL', KEYS[1], ARGV[3])
        return 1
        """)
}
