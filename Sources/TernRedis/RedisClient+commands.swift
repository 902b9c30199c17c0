import NIOCore

// Typed commands for what Tern uses. Each is a thin, documented wrapper over `send`; anything
// else goes through `send(_:)` with a `RESPCommand` (the escape hatch).

extension RedisClient {
    // MARK: Strings and keys

    /// GET: the value, or `nil` when the key does not exist.
    public func get(_ key: String) async throws -> ByteBuffer? {
        if case .bulkString(let value) = try await send("GET", key) { return value }
        return nil
    }

    /// SET with an optional expiry; `onlyIfAbsent` makes it SET NX. Returns whether it was set.
    @discardableResult
    public func set(_ key: String, to value: any RESPArgument, expiresIn seconds: Int? = nil, onlyIfAbsent: Bool = false) async throws -> Bool {
        var arguments: [any RESPArgument] = [key, value]
        if let seconds { arguments += ["EX", seconds] }
        if onlyIfAbsent { arguments.append("NX") }
        return !(try await send(RESPCommand("SET", arguments))).isNull
    }

    /// INCRBY: the new value.
    public func increment(_ key: String, by amount: Int = 1) async throws -> Int64 {
        try integer(await send("INCRBY", key, amount))
    }

    /// DEL: how many of the keys existed.
    @discardableResult
    public func delete(_ keys: [String]) async throws -> Int64 {
        guard !keys.isEmpty else { return 0 }
        return try integer(await send(RESPCommand("DEL", keys)))
    }

    /// EXPIRE: whether the key exists (and now expires).
    @discardableResult
    public func expire(_ key: String, seconds: Int) async throws -> Bool {
        try integer(await send("EXPIRE", key, seconds)) == 1
    }

    /// TTL in seconds; -1 without expiry, -2 when the key does not exist.
    public func timeToLive(_ key: String) async throws -> Int64 {
        try integer(await send("TTL", key))
    }

    // MARK: Hashes

    /// HSET: how many fields were new.
    @discardableResult
    public func hashSet(_ key: String, _ fields: [(String, any RESPArgument)]) async throws -> Int64 {
        try integer(await send(RESPCommand("HSET", [key] + fields.flatMap { [$0.0, $0.1] as [any RESPArgument] })))
    }

    /// HGET: the field's value, or `nil`.
    public func hashGet(_ key: String, field: String) async throws -> String? {
        try await send("HGET", key, field).string
    }

    /// HGETALL as a dictionary (RESP2 array or RESP3 map).
    public func hashGetAll(_ key: String) async throws -> [String: String] {
        try await send("HGETALL", key).fieldDictionary
    }

    // MARK: Lists

    /// RPUSH: the list's new length.
    @discardableResult
    public func pushBack(_ key: String, _ values: [any RESPArgument]) async throws -> Int64 {
        try integer(await send(RESPCommand("RPUSH", [key] + values)))
    }

    /// BLPOP on a dedicated connection, so the wait never holds up other commands. Returns the
    /// key and value, or `nil` when `timeoutSeconds` passed.
    public func blockingPopFront(_ keys: [String], timeoutSeconds: Double) async throws -> (key: String, value: ByteBuffer)? {
        let reply = try await withDedicatedConnection { connection in
            try await connection.send(RESPCommand("BLPOP", keys + [String(timeoutSeconds)]), blockingFor: .milliseconds(Int64(timeoutSeconds * 1000)))
        }
        guard let pair = reply.array, pair.count == 2, let key = pair[0].string, case .bulkString(let value?) = pair[1] else { return nil }
        return (key, value)
    }

    // MARK: Sorted sets

    /// ZADD: how many members were new.
    @discardableResult
    public func sortedSetAdd(_ key: String, _ members: [(score: Double, member: String)]) async throws -> Int64 {
        try integer(await send(RESPCommand("ZADD", [key] + members.flatMap { [$0.score, $0.member] as [any RESPArgument] })))
    }

    /// ZRANGE BYSCORE with an optional LIMIT: members with scores in `minimum...maximum`.
    public func sortedSetRange(_ key: String, scores minimum: Double, _ maximum: Double, limit: Int? = nil) async throws -> [String] {
        var arguments: [any RESPArgument] = [key, minimum, maximum, "BYSCORE"]
        if let limit { arguments += ["LIMIT", 0, limit] }
        return (try await send(RESPCommand("ZRANGE", arguments)).array ?? []).compactMap(\.string)
    }

    /// ZREM: how many members were removed.
    @discardableResult
    public func sortedSetRemove(_ key: String, _ members: [String]) async throws -> Int64 {
        try integer(await send(RESPCommand("ZREM", [key] + members)))
    }

    // MARK: Transactions and server

    /// MULTI … EXEC in one round trip: every command's result, or `nil` if a WATCHed key changed.
    /// A command that fails inside the transaction fails alone, as Redis does.
    public func transaction(_ commands: [RESPCommand]) async throws -> [Result<RESPValue, RedisError>]? {
        try Self.execResults(try await transactionPipeline(commands))
    }

    /// An optimistic transaction: WATCH `keys` on a connection of its own, let `body` read
    /// (on that connection) and decide the commands, then run them in MULTI/EXEC. Returns
    /// `nil` when a watched key changed in between, so the caller can retry.
    public func watching(
        _ keys: [String], _ body: (RedisConnection) async throws -> [RESPCommand]
    ) async throws -> [Result<RESPValue, RedisError>]? {
        try await withDedicatedConnection { connection in
            _ = try await connection.send(RESPCommand("WATCH", keys))
            let commands = try await body(connection)
            guard !commands.isEmpty else {
                _ = try await connection.send(RESPCommand("UNWATCH"))
                return []
            }
            return try Self.execResults(try await connection.pipeline([RESPCommand("MULTI")] + commands + [RESPCommand("EXEC")]))
        }
    }

    /// The results inside EXEC's reply; `nil` when EXEC was aborted (a watched key changed).
    /// EXEC's own error (EXECABORT: a command was rejected when queued) is thrown.
    private static func execResults(_ replies: [Result<RESPValue, RedisError>]) throws -> [Result<RESPValue, RedisError>]? {
        let exec = try replies[replies.count - 1].get()
        if exec.isNull { return nil }
        return (exec.array ?? []).map { reply -> Result<RESPValue, RedisError> in
            if case .error(let message) = reply { return .failure(RedisError(.server, message)) }
            return .success(reply)
        }
    }

    /// INFO for one section, as key-value pairs.
    public func info(_ section: String = "default") async throws -> [String: String] {
        let text = try await send("INFO", section).string ?? ""
        var result: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            result[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return result
    }

    // MARK: Pub/sub and clients

    /// PUBLISH: how many subscribers received the message.
    @discardableResult
    public func publish(_ message: any RESPArgument, to channel: String) async throws -> Int64 {
        try integer(await send("PUBLISH", channel, message))
    }

    /// CLIENT ID of one of the shared connections.
    public func clientID() async throws -> Int64 {
        try integer(await send("CLIENT", "ID"))
    }

    /// CLIENT LIST: one dictionary per connection (`id`, `name`, `cmd`, `addr`, ...).
    public func clientList() async throws -> [[String: String]] {
        let text = try await send("CLIENT", "LIST").string ?? ""
        return text.split(whereSeparator: \.isNewline).map { line in
            var fields: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            return fields
        }
    }

    /// CLIENT KILL ID: whether a connection was closed.
    @discardableResult
    public func clientKill(id: Int64) async throws -> Bool {
        try integer(await send("CLIENT", "KILL", "ID", id)) == 1
    }

    func integer(_ reply: RESPValue) throws -> Int64 {
        guard case .integer(let value) = reply else { throw RedisError(.unexpectedReply, "expected an integer reply") }
        return value
    }
}
