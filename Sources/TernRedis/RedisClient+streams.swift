import NIOCore

/// One entry of a stream.
public struct StreamEntry: Sendable, Hashable {
    public let id: String
    public let fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    /// An entry as Redis sends it, `[id, [field, value, ...]]`; `nil` for a deleted entry
    /// (XAUTOCLAIM and XCLAIM report those with null fields) or another shape.
    init?(_ reply: RESPValue) {
        guard let pair = reply.array, pair.count == 2, let id = pair[0].string, !pair[1].isNull else { return nil }
        self.init(id: id, fields: pair[1].fieldDictionary)
    }
}

/// One entry of a consumer group's pending list (XPENDING's extended form).
public struct StreamPendingEntry: Sendable, Hashable {
    public let id: String
    public let consumer: String
    /// Time since the entry was last delivered (or its idle time reset).
    public let idle: Duration
    /// How many times it was delivered.
    public let deliveries: Int64
}

// Streams and consumer groups. Reads that wait on the server (`block`) run on a dedicated
// connection, so they never hold up other commands.
extension RedisClient {
    /// XADD with an optional approximate length cap: the new entry's id.
    @discardableResult
    public func streamAdd(_ key: String, maximumLength: Int? = nil, _ fields: [(String, any RESPArgument)]) async throws -> String {
        var arguments: [any RESPArgument] = [key]
        if let maximumLength { arguments += ["MAXLEN", "~", maximumLength] }
        arguments.append("*")
        arguments += fields.flatMap { [$0.0, $0.1] as [any RESPArgument] }
        guard let id = try await send(RESPCommand("XADD", arguments)).string else {
            throw RedisError(.unexpectedReply, "XADD returned no id")
        }
        return id
    }

    /// XLEN.
    public func streamLength(_ key: String) async throws -> Int64 {
        try integer(await send("XLEN", key))
    }

    /// XRANGE from `start` to `end` ("-" and "+" for the whole stream).
    public func streamRange(_ key: String, from start: String = "-", to end: String = "+", count: Int? = nil) async throws -> [StreamEntry] {
        var arguments: [any RESPArgument] = [key, start, end]
        if let count { arguments += ["COUNT", count] }
        return (try await send(RESPCommand("XRANGE", arguments)).array ?? []).compactMap(StreamEntry.init)
    }

    /// XDEL: how many entries were deleted.
    @discardableResult
    public func streamDelete(_ key: String, ids: [String]) async throws -> Int64 {
        try integer(await send(RESPCommand("XDEL", [key] + ids)))
    }

    /// XREAD of one stream: entries after `id`, waiting up to `block` for the first one
    /// (`nil`: no wait). Empty when none came in time.
    public func streamRead(_ key: String, after id: String, count: Int, block: TimeAmount? = nil) async throws -> [StreamEntry] {
        var arguments: [any RESPArgument] = ["COUNT", count]
        if let block { arguments += ["BLOCK", max(1, block.nanoseconds / 1_000_000)] }
        arguments += ["STREAMS", key, id]
        return try await read(RESPCommand("XREAD", arguments), block: block)
    }

    /// XGROUP CREATE (with MKSTREAM when `createStream`): `false` if the group already existed.
    @discardableResult
    public func streamCreateGroup(_ key: String, group: String, startingAt id: String = "$", createStream: Bool = true) async throws -> Bool {
        var arguments: [any RESPArgument] = ["CREATE", key, group, id]
        if createStream { arguments.append("MKSTREAM") }
        do {
            try await send(RESPCommand("XGROUP", arguments))
            return true
        } catch let error as RedisError where error.code == .server && error.message.hasPrefix("BUSYGROUP") {
            return false
        }
    }

    /// XREADGROUP of one stream for `consumer`: new entries (`id` ">") or the consumer's own
    /// pending ones (`id` "0"), waiting up to `block` (`nil`: no wait).
    public func streamReadGroup(
        _ key: String, group: String, consumer: String, after id: String = ">", count: Int, block: TimeAmount? = nil
    ) async throws -> [StreamEntry] {
        var arguments: [any RESPArgument] = ["GROUP", group, consumer, "COUNT", count]
        if let block { arguments += ["BLOCK", max(1, block.nanoseconds / 1_000_000)] }
        arguments += ["STREAMS", key, id]
        return try await read(RESPCommand("XREADGROUP", arguments), block: block)
    }

    /// XACK: how many entries were acknowledged.
    @discardableResult
    public func streamAcknowledge(_ key: String, group: String, ids: [String]) async throws -> Int64 {
        try integer(await send(RESPCommand("XACK", [key, group] + ids)))
    }

    /// XAUTOCLAIM: moves to `consumer` up to `count` pending entries idle for at least
    /// `minimumIdle`, scanning from `start`. Returns the cursor for the next call ("0-0" when
    /// the scan is complete), the claimed entries and the ids of entries that were deleted.
    public func streamAutoClaim(
        _ key: String, group: String, consumer: String, minimumIdle: Duration, start: String = "0-0", count: Int = 100
    ) async throws -> (next: String, entries: [StreamEntry], deleted: [String]) {
        let reply = try await send("XAUTOCLAIM", key, group, consumer, minimumIdle.milliseconds, start, "COUNT", count)
        guard let parts = reply.array, parts.count >= 2, let next = parts[0].string else {
            throw RedisError(.unexpectedReply, "XAUTOCLAIM reply has an unexpected shape")
        }
        let entries = (parts[1].array ?? []).compactMap(StreamEntry.init)
        let deleted = parts.count > 2 ? (parts[2].array ?? []).compactMap(\.string) : []
        return (next, entries, deleted)
    }

    /// XPENDING's extended form: pending entries from `start` to `end`, at most `count`.
    public func streamPending(_ key: String, group: String, from start: String = "-", to end: String = "+", count: Int) async throws -> [StreamPendingEntry] {
        let reply = try await send("XPENDING", key, group, start, end, count)
        return (reply.array ?? []).compactMap { entry in
            guard let fields = entry.array, fields.count == 4, let id = fields[0].string, let consumer = fields[1].string,
                  let idle = fields[2].int, let deliveries = fields[3].int else { return nil }
            return StreamPendingEntry(id: id, consumer: consumer, idle: .milliseconds(idle), deliveries: deliveries)
        }
    }

    /// Runs a stream read, on a dedicated connection when it blocks.
    private func read(_ command: RESPCommand, block: TimeAmount?) async throws -> [StreamEntry] {
        let reply: RESPValue
        if let block {
            reply = try await withDedicatedConnection { try await $0.send(command, blockingFor: block) }
        } else {
            reply = try await send(command)
        }
        return reply.firstStreamEntries.compactMap(StreamEntry.init)
    }
}

extension Duration {
    /// Whole milliseconds, rounded down: the unit of Redis' timeouts and stream ids.
    public var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
