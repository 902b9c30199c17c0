import NIOCore
import NIOPosix
import Testing
import TernRedis
import TernTestSupport

/// Against the real redis-server started by scripts/test.
@Suite struct RedisClientIntegrationTests {
    @Test func sendsCommandsAndDecodesReplies() async throws {
        try await TestServices.withRedis { client in
            let key = TestServices.uniqueName("test:string")
            try await client.send("SET", key, "value", "EX", 60)
            #expect(try await client.send("GET", key).string == "value")
            #expect(try await client.send("INCRBY", key + ":n", 5).int == 5)
            #expect(try await client.send("GET", key + ":missing").isNull)
            await #expect(throws: RedisError.self) { try await client.send("NOSUCHCOMMAND") }
            try await client.send("DEL", key, key + ":n")
        }
    }

    @Test func pipelinesManyCommandsInOneFlush() async throws {
        try await TestServices.withRedis { client in
            let key = TestServices.uniqueName("test:list")
            let replies = try await client.pipeline((0..<1000).map { RESPCommand("RPUSH", key, $0) } + [RESPCommand("LLEN", key), RESPCommand("DEL", key)])
            #expect(replies.count == 1002)
            #expect(try replies[1000].get().int == 1000)
        }
    }

    @Test func concurrentCallersShareTheConnectionInOrder() async throws {
        try await TestServices.withRedis { client in
            let key = TestServices.uniqueName("test:concurrent")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let reply = try await client.send("ECHO", "\(key)-\(index)")
                        #expect(reply.string == "\(key)-\(index)")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func reconnectsAfterTheConnectionIsKilled() async throws {
        try await TestServices.withRedis(configure: { $0.pool.pipelinedConnections = 1 }) { client in
            let id = try #require(try await client.send("CLIENT", "ID").int)
            // Kill the connection from another one, as a server restart or network cut would.
            try await TestServices.withRedis { killer in try await killer.send("CLIENT", "KILL", "ID", id) }
            let recovered = await eventually {
                (try? await client.send("PING"))?.string == "PONG"
            }
            #expect(recovered)
        }
    }

    @Test func blockingCommandsUseTheirOwnConnection() async throws {
        try await TestServices.withRedis { client in
            let key = TestServices.uniqueName("test:blocking")
            try await withThrowingTaskGroup(of: RESPValue.self) { group in
                group.addTask {
                    try await client.withDedicatedConnection { try await $0.send(RESPCommand("BLPOP", key, 30)) }
                }
                // While BLPOP waits, ordinary commands still go through.
                #expect(try await client.send("PING").string == "PONG")
                try await client.send("RPUSH", key, "item")
                let popped = try await group.next()
                #expect(popped?.array?.last?.string == "item")
            }
        }
    }
}

/// Handshake and cancellation against the real server.
@Suite struct RedisHandshakeTests {
    @Test(arguments: [2, 3])
    func negotiatesTheProtocolAndNamesTheClient(version: Int) async throws {
        var configuration = try RedisConfiguration(url: TestServices.redisURL)
        configuration.protocolVersion = version
        configuration.clientName = TestServices.uniqueName("named")
        let connection = try await RedisConnection.connect(to: configuration)
        defer { connection.close() }
        #expect(connection.protocolVersion == version)
        #expect(try await connection.send(RESPCommand("CLIENT", "GETNAME")).string == configuration.clientName)
        let reply = try await connection.send(RESPCommand("HGETALL", TestServices.uniqueName("missing")))
        if version == 3 { #expect(reply == .map([:])) } else { #expect(reply == .array([])) }
    }

    @Test func aCancelledCallerReturnsAtOnce() async throws {
        try await TestServices.withRedis { client in
            let connection = try await RedisConnection.connect(to: client.configuration)
            defer { connection.close() }
            let id = try #require(try await connection.send(RESPCommand("CLIENT", "ID")).int)
            // A caller stuck in a 30-second blocking pop is cancelled: it returns promptly.
            let waiter = Task { try await connection.send(RESPCommand("BLPOP", TestServices.uniqueName("empty"), 30)) }
            #expect(try await eventually {
                try await client.send("CLIENT", "LIST", "ID", id).string?.contains("cmd=blpop") == true
            })
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
        }
    }

    @Test func aCallerWaitingThroughCancellationGetsTheReply() async throws {
        try await TestServices.withRedis { client in
            let connection = try await RedisConnection.connect(to: client.configuration)
            defer { connection.close() }
            let id = try #require(try await connection.send(RESPCommand("CLIENT", "ID")).int)
            let list = TestServices.uniqueName("list")
            let waiter = Task {
                try await connection.send(RESPCommand("BLPOP", list, 30), blockingFor: .seconds(30), waitingThroughCancellation: true)
            }
            #expect(try await eventually {
                try await client.send("CLIENT", "LIST", "ID", id).string?.contains("cmd=blpop") == true
            })
            waiter.cancel()
            try await client.send("LPUSH", list, "taken")
            #expect(try await waiter.value.array?.compactMap(\.string) == [list, "taken"])
        }
    }
}

@Suite struct RedisCircuitBreakerTests {
    @Test func failsFastWhileTheServerIsDown() async throws {
        // Nothing listens on port 1: the first call tries and fails, the next (within the
        // backoff, a minute here) fails without trying.
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:1")
        configuration.reconnectBackoff = .seconds(60)
        let client = RedisClient(configuration: configuration)
        await #expect(throws: RedisError.self) { try await client.send("PING") }
        do {
            try await client.send("PING")
            Issue.record("expected a fast failure")
        } catch let error as RedisError {
            #expect(error.code == .connectFailed)
            #expect(error.message.contains("unavailable"))
        }
        await client.shutdown()
    }
}

@Suite struct RedisTimeoutTests {
    @Test func aServerThatNeverAnswersTheHandshakeTimesOut() async throws {
        // A listener that accepts connections and never replies.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        var configuration = RedisConfiguration()
        configuration.port = try #require(silent.localAddress?.port)
        configuration.connectTimeout = .milliseconds(300)
        await #expect(throws: RedisError.self) { _ = try await RedisConnection.connect(to: configuration) }
    }
}

@Suite struct RedisLargeReplyTests {
    @Test func largeRepliesArriveWholeAcrossManyReads() async throws {
        try await TestServices.withRedis { (client: RedisClient) async throws in
            let key = TestServices.uniqueName("large")
            let value = ByteBuffer(repeating: UInt8(ascii: "v"), count: 4 << 20)
            try await client.set(key, to: value, expiresIn: 60)
            #expect(try await client.get(key) == value)
            let items = (0..<50_000).map { "item-\($0)" as any RESPArgument }
            try await client.pushBack(key + ":list", items)
            let list = try await client.send("LRANGE", key + ":list", 0, -1).array ?? []
            #expect(list.count == 50_000)
            #expect(list.last?.string == "item-49999")
            // The connection is still in step afterwards.
            #expect(try await client.send("PING").string == "PONG")
            try await client.delete([key, key + ":list"])
        }
    }
}
