import NIOCore
import ServiceLifecycle
import Testing
import TernRedis
import TernTestSupport

/// Deadlines, keep-alive and the connection pool, against the real server.
@Suite struct RedisPoolTests {
    /// Connections of the test server whose client name is `name`.
    func connections(named name: String, _ redis: RedisClient) async throws -> [[String: String]] {
        try await redis.clientList().filter { $0["name"] == name }
    }

    /// Waits until a connection named `name` is blocked in BLPOP on the server.
    func waitForBlockedPop(_ name: String, _ redis: RedisClient) async throws {
        let blocked = try await eventually { try await connections(named: name, redis).contains { $0["cmd"] == "blpop" } }
        try #require(blocked)
    }

    func expectError(_ code: RedisError.Code, _ body: () async throws -> Void) async {
        await #expect { try await body() } throws: { error in (error as? RedisError)?.code == code }
    }

    @Test func aReplyLateBeyondTheTimeoutFailsTheCallerAndReplacesTheConnection() async throws {
        let name = TestServices.uniqueName("late")
        try await TestServices.withRedis(configure: { $0.commandTimeout = .seconds(1); $0.clientName = name }) { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("late")
            // BLPOP holds the reply for 5 s; sent without its blocking time, it is overdue after 1 s.
            await expectError(.timedOut) {
                _ = try await redis.withDedicatedConnection { try await $0.send(RESPCommand("BLPOP", key, 5)) }
            }
            // The overdue connection was closed, not reused.
            #expect(try await eventually { try await connections(named: name, redis).allSatisfy { $0["cmd"] != "blpop" } })
            // Given its blocking time, the same command waits and succeeds.
            async let popped = redis.withDedicatedConnection { connection in
                try await connection.send(RESPCommand("BLPOP", key, 5), blockingFor: .seconds(5))
            }
            try await waitForBlockedPop(name, redis)
            try await redis.send("RPUSH", key, "item")
            #expect(try await popped.array?.last?.string == "item")
            #expect(try await redis.send("PING").string == "PONG")
        }
    }

    @Test func quietConnectionsSendKeepAlivePings() async throws {
        let name = TestServices.uniqueName("keepalive")
        try await TestServices.withRedis(configure: { $0.keepAliveInterval = .milliseconds(100); $0.clientName = name }) { (redis: RedisClient) async throws in
            try await redis.send("ECHO", "hello")
            try await TestServices.withRedis { (observer: RedisClient) async throws in
                let pinged = try await eventually {
                    try await connections(named: name, observer).contains { $0["cmd"] == "ping" }
                }
                #expect(pinged)
            }
        }
    }

    @Test func dedicatedConnectionsAreCappedAndReused() async throws {
        let name = TestServices.uniqueName("cap")
        let configure = { (configuration: inout RedisConfiguration) in
            configuration.pool.maximumDedicated = 1
            configuration.pool.maximumWait = .milliseconds(300)
            configuration.clientName = name
        }
        try await TestServices.withRedis(configure: configure) { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("cap")
            async let holder = redis.withDedicatedConnection { connection in
                let id = try await connection.send(RESPCommand("CLIENT", "ID")).int
                _ = try await connection.send(RESPCommand("BLPOP", key, 10), blockingFor: .seconds(10))
                return id
            }
            try await waitForBlockedPop(name, redis)
            // The only dedicated connection is busy: a second caller waits, then gives up.
            await expectError(.poolExhausted) {
                _ = try await redis.withDedicatedConnection { try await $0.send(RESPCommand("PING")) }
            }
            try await redis.send("RPUSH", key, "release")
            let holderID = try await holder
            // Once returned, the same connection serves the next caller.
            let reusedID = try await redis.withDedicatedConnection { try await $0.send(RESPCommand("CLIENT", "ID")).int }
            #expect(reusedID == holderID)
        }
    }

    @Test func aWaiterGetsTheDedicatedConnectionWhenItIsFreed() async throws {
        let name = TestServices.uniqueName("handover")
        try await TestServices.withRedis(configure: { $0.pool.maximumDedicated = 1; $0.clientName = name }) { (redis: RedisClient) async throws in
            let key = TestServices.uniqueName("handover")
            async let holder = redis.withDedicatedConnection { connection in
                try await connection.send(RESPCommand("BLPOP", key, 10), blockingFor: .seconds(10))
            }
            try await waitForBlockedPop(name, redis)
            async let waiter = redis.withDedicatedConnection { try await $0.send(RESPCommand("PING")) }
            try await redis.send("RPUSH", key, "release")
            #expect(try await holder.array?.last?.string == "release")
            #expect(try await waiter.string == "PONG")
        }
    }

    @Test func runningTheClientKeepsThePoolWarmAndShutdownClosesIt() async throws {
        let name = TestServices.uniqueName("warm")
        var configuration = try RedisConfiguration(url: TestServices.redisURL)
        configuration.clientName = name
        configuration.pool.pipelinedConnections = 2
        configuration.pool.minimumIdleDedicated = 3
        let client = RedisClient(configuration: configuration, logger: TestServices.logger)
        try await TestServices.withRedis { (observer: RedisClient) async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.run() }
                let warm = try await eventually { try await connections(named: name, observer).count == 5 }
                #expect(warm)
                group.cancelAll()
                try await group.waitForAll()
            }
            let closed = try await eventually { try await connections(named: name, observer).isEmpty }
            #expect(closed)
        }
    }

    @Test func sharedConnectionsRefuseCommandsThatChangeConnectionState() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            for command in [RESPCommand("SUBSCRIBE", "c"), RESPCommand("MULTI"), RESPCommand("WATCH", "k"), RESPCommand("select", 1)] {
                await expectError(.invalidArgument) { try await redis.send(command) }
            }
            await expectError(.invalidArgument) { _ = try await redis.pipeline([RESPCommand("PING"), RESPCommand("EXEC")]) }
            // Nothing was sent: the shared connection is still in step.
            #expect(try await redis.send("PING").string == "PONG")
        }
    }
}
