import TernRedis

/// One event in a job's event stream.
public struct JobEvent: Sendable, Hashable {
    /// The stream entry id; clients resume after it.
    public let id: String
    public let fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    public var type: String { fields["type"] ?? "" }
}

/// The per-job event streams: the worker appends (tokens, completion, errors), the API reads.
public struct JobEvents: Sendable {
    public let client: RedisClient
    /// How long a job's events are kept after the last append.
    public let retentionSeconds: Int

    public init(client: RedisClient, retentionSeconds: Int = 24 * 3600) {
        self.client = client
        self.retentionSeconds = retentionSeconds
    }

    public func key(_ job: JobID) -> String { "tern:job:{\(job.rawValue)}:events" }

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

    /// Reads events after `lastID` ("0" for all), waiting up to `blockMilliseconds` for new ones.
    /// Uses `connection` because the wait blocks it.
    public func read(_ job: JobID, after lastID: String, blockMilliseconds: Int, count: Int = 256, on connection: RedisConnection) async throws -> [JobEvent] {
        let reply = try await connection.send(RESPCommand(
            "XREAD", "COUNT", count, "BLOCK", blockMilliseconds, "STREAMS", key(job), lastID))
        return reply.firstStreamEntries.compactMap(Self.event(from:))
    }
}

extension JobEvents {
    /// Every event of a job so far, without waiting.
    public func all(_ job: JobID) async throws -> [JobEvent] {
        let reply = try await client.send("XRANGE", key(job), "-", "+")
        return (reply.array ?? []).compactMap(Self.event(from:))
    }

    static func event(from entry: RESPValue) -> JobEvent? {
        guard let pair = entry.array, pair.count == 2, let id = pair[0].string else { return nil }
        return JobEvent(id: id, fields: pair[1].fieldDictionary)
    }
}
