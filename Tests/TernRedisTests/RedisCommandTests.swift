import NIOCore
import Testing
@testable import TernRedis
import TernTestSupport

/// The typed commands, one family at a time, against the real server.
@Suite struct RedisCommandTests {
    @Test func stringsAndKeys() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("s")
            #expect(try await redis.set(key, to: "v", expiresIn: 60))
            #expect(try await redis.set(key, to: "w", onlyIfAbsent: true) == false)
            #expect(try await redis.get(key) == ByteBuffer(string: "v"))
            #expect(try await redis.timeToLive(key) > 0)
            #expect(try await redis.increment(key + ":n", by: 5) == 5)
            #expect(try await redis.delete([key, key + ":n", key + ":none"]) == 2)
            #expect(try await redis.get(key) == nil)
            #expect(try await redis.timeToLive(key) == -2)
        }
    }

    @Test func hashesListsAndSortedSets() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("h")
            #expect(try await redis.hashSet(key, [("a", "1"), ("b", 2)]) == 2)
            #expect(try await redis.hashGet(key, field: "b") == "2")
            #expect(try await redis.hashGetAll(key) == ["a": "1", "b": "2"])
            #expect(try await redis.pushBack(key + ":l", ["x", "y"]) == 2)
            let popped = try await redis.blockingPopFront([key + ":l"], timeoutSeconds: 1)
            #expect(popped?.value == ByteBuffer(string: "x"))
            #expect(try await redis.blockingPopFront([key + ":empty"], timeoutSeconds: 0.1) == nil)
            #expect(try await redis.sortedSetAdd(key + ":z", [(1, "one"), (2, "two"), (3, "three")]) == 3)
            #expect(try await redis.sortedSetRange(key + ":z", scores: 2, 3) == ["two", "three"])
            #expect(try await redis.sortedSetRange(key + ":z", scores: 0, 10, limit: 1) == ["one"])
            #expect(try await redis.sortedSetRemove(key + ":z", ["one"]) == 1)
            try await redis.delete([key, key + ":l", key + ":z"])
        }
    }

    @Test func streamsTransactionsAndInfo() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("x")
            let id = try await redis.streamAdd(key, maximumLength: 100, [("f", "v")])
            #expect(id.contains("-"))
            #expect(try await redis.streamLength(key) == 1)
            let results = try #require(try await redis.transaction([
                RESPCommand("INCR", key + ":n"), RESPCommand("INCR", key), RESPCommand("INCR", key + ":n"),
            ]))
            #expect(try results[0].get().int == 1)
            #expect(throws: RedisError.self) { try results[1].get() }  // wrong type fails alone
            #expect(try results[2].get().int == 2)
            #expect(try await redis.info("server")["redis_version"]?.isEmpty == false)
            try await redis.delete([key, key + ":n"])
        }
    }

    @Test func streamConsumerGroups() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("group")
            #expect(try await redis.streamCreateGroup(key, group: "g", startingAt: "0"))
            #expect(try await redis.streamCreateGroup(key, group: "g", startingAt: "0") == false)
            let first = try await redis.streamAdd(key, [("n", "1")])
            let second = try await redis.streamAdd(key, [("n", "2")])
            #expect(try await redis.streamRange(key).map(\.fields) == [["n": "1"], ["n": "2"]])
            #expect(try await redis.streamRead(key, after: first, count: 10).map(\.id) == [second])
            #expect(try await redis.streamRead(key, after: second, count: 10, block: .milliseconds(50)).isEmpty)

            let delivered = try await redis.streamReadGroup(key, group: "g", consumer: "a", count: 10)
            #expect(delivered.map(\.id) == [first, second])
            #expect(try await redis.streamReadGroup(key, group: "g", consumer: "a", count: 10, block: .milliseconds(50)).isEmpty)
            let pending = try await redis.streamPending(key, group: "g", count: 10)
            #expect(pending.map(\.consumer) == ["a", "a"])
            #expect(pending.map(\.deliveries) == [1, 1])
            #expect(try await redis.streamAcknowledge(key, group: "g", ids: [first]) == 1)

            // Consumer b takes over what a left pending; a deleted entry is reported, not returned.
            let third = try await redis.streamAdd(key, [("n", "3")])
            _ = try await redis.streamReadGroup(key, group: "g", consumer: "a", count: 10)
            try await redis.streamDelete(key, ids: [third])
            let claimed = try await redis.streamAutoClaim(key, group: "g", consumer: "b", minimumIdle: .zero)
            #expect(claimed.next == "0-0")
            #expect(claimed.entries.map(\.id) == [second])
            #expect(claimed.deleted == [third])
            #expect(try await redis.streamPending(key, group: "g", count: 10).map(\.deliveries) == [2])
            try await redis.delete([key])
        }
    }

    @Test func clientsAndPublish() async throws {
        let name = TestServices.uniqueName("named")
        try await TestServices.withRedis(configure: { $0.clientName = name; $0.pool.pipelinedConnections = 1 }) { (redis: RedisClient) async throws in
            let id = try await redis.clientID()
            let mine = try await redis.clientList().filter { $0["name"] == name }
            #expect(mine.map { $0["id"] } == [String(id)])
            #expect(try await redis.publish("nobody listens", to: TestServices.uniqueName("channel")) == 0)
            try await TestServices.withRedis { (other: RedisClient) async throws in #expect(try await other.clientKill(id: id)) }
            // A call that meets the killed connection fails (connectionClosed); the next reconnects.
            #expect(await eventually { (try? await redis.clientID()).map { $0 != id } ?? false })
        }
    }

    @Test func scriptsLoadThemselvesAfterTheCacheIsFlushed() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            let key = TestServices.uniqueName("lua")
            try await redis.send("SCRIPT", "FLUSH")  // as after a server restart
            // Each run finds the script gone (NOSCRIPT), loads it and runs again. (Whether it is
            // still cached afterwards is not asked: other tests flush the shared server's scripts
            // too, at any moment.)
            #expect(try await redis.run(script, keys: [key], arguments: [2]).int == 2)
            #expect(try await redis.run(script, keys: [key], arguments: [3]).int == 5)
            try await redis.delete([key])
        }
    }
}

@Suite struct RedisKeyTests {
    @Test func knowsTheKeysOfCommands() {
        func keys(_ command: RESPCommand) -> [String]? { command.keys?.map { String(buffer: $0) } }
        #expect(keys(RESPCommand("GET", "a")) == ["a"])
        #expect(keys(RESPCommand("DEL", "a", "b")) == ["a", "b"])
        #expect(keys(RESPCommand("BLPOP", "a", "b", 5)) == ["a", "b"])
        #expect(keys(RESPCommand("MSET", "a", 1, "b", 2)) == ["a", "b"])
        #expect(keys(RESPCommand("EVALSHA", "sha", 2, "k1", "k2", "arg")) == ["k1", "k2"])
        #expect(keys(RESPCommand("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "STREAMS", "s1", "s2", ">", ">")) == ["s1", "s2"])
        #expect(keys(RESPCommand("XGROUP", "CREATE", "s", "g", "0")) == ["s"])
        #expect(keys(RESPCommand("PING")) == [])
        #expect(keys(RESPCommand("EVAL", "x", 9, "k")) == nil)  // a count beyond the arguments
    }

    @Test func mapsKeysToClusterSlotsWithHashTags() {
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)) == 0x31C3)  // CRC16/XMODEM check value
        #expect(RedisHashSlot.slot(for: "foo") == 12182)
        #expect(RedisHashSlot.slot(for: "{user1000}.following") == RedisHashSlot.slot(for: "{user1000}.followers"))
        #expect(RedisHashSlot.slot(for: "foo{}{bar}") == RedisHashSlot.slot(for: "foo{}{bar}"))
        // Every key of one queue command lands in one slot.
        let command = RESPCommand("EVALSHA", "sha", 1, "tern:{chat}:jobs", "workers")
        #expect(Set(command.keys!.map(RedisHashSlot.slot(for:))).count == 1)
    }
}

@Suite struct RedisWatchTests {
    @Test func watchedTransactionAbortsWhenTheKeyChanges() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("watch")
            try await redis.set(key, to: "1")
            // Undisturbed: the transaction runs.
            let applied = try await redis.watching([key]) { connection in
                let current = try await connection.send(RESPCommand("GET", key)).int ?? 0
                return [RESPCommand("SET", key, Int(current) + 1)]
            }
            #expect(applied?.count == 1)
            #expect(try await redis.get(key) == ByteBuffer(string: "2"))
            // Another client changes the key between WATCH and EXEC: nothing is applied.
            let aborted = try await redis.watching([key]) { connection in
                _ = try await connection.send(RESPCommand("GET", key))
                try await redis.set(key, to: "changed")
                return [RESPCommand("SET", key, "mine")]
            }
            #expect(aborted == nil)
            #expect(try await redis.get(key) == ByteBuffer(string: "changed"))
            try await redis.delete([key])
        }
    }
}
