import Foundation
import NIOConcurrencyHelpers
import Testing
import TernRedis
import TernTestSupport

/// A Redis server of the test's own, so it can be restarted without disturbing other tests.
final class PrivateRedisServer: Sendable {
    let port: Int
    let directory: URL
    let extraArguments: [String]
    private let process = NIOLockedValueBox<Process?>(nil)

    init(extraArguments: [String] = []) throws {
        self.extraArguments = extraArguments
        port = Int.random(in: 20_000...29_999)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-redis-\(port)-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func start() throws {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--bind", "127.0.0.1", "--port", String(port), "--dir", directory.path,
                            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile", ""] + extraArguments
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        process.withLockedValue { $0 = server }
    }

    /// Stops the server with SHUTDOWN (it writes its append-only file) and waits for it to exit.
    func shutdown() async throws {
        try? await TestServices.withRedis(url: url) { client in _ = try? await client.send("SHUTDOWN") }
        let server = process.withLockedValue { $0 }
        _ = await eventually { !(server?.isRunning ?? false) }
    }

    deinit {
        process.withLockedValue { $0 }?.terminate()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite struct RedisRestartTests {
    /// Eight callers write in a loop while the server restarts: every call returns (an error or a
    /// reply, none hangs), the client reconnects by itself, and no acknowledged write is lost.
    @Test func survivesARestartUnderLoadWithoutLosingAcknowledgedWrites() async throws {
        let server = try PrivateRedisServer()
        try server.start()
        let client = RedisClient(configuration: try RedisConfiguration(url: server.url))
        #expect(await eventually { (try? await client.send("PING"))?.string == "PONG" })

        let callers = 8
        let acknowledged = NIOLockedValueBox([Int64](repeating: 0, count: callers))
        let failures = NIOLockedValueBox(0)
        let stop = NIOLockedValueBox(false)
        func total() -> Int64 { acknowledged.withLockedValue { $0.reduce(0, +) } }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    while !stop.withLockedValue({ $0 }) {
                        do {
                            let value = try await client.send("INCR", "restart:\(caller)").int ?? 0
                            acknowledged.withLockedValue { $0[caller] = max($0[caller], value) }
                        } catch {
                            failures.withLockedValue { $0 += 1 }
                            try await Task.sleep(for: .milliseconds(5))  // back off while the server is away
                        }
                    }
                }
            }
            #expect(await eventually { total() > 2000 })
            try await server.shutdown()
            let beforeRestart = total()
            try server.start()
            // Writes flow again after the restart, through the same client.
            #expect(await eventually(timeout: .seconds(60)) { total() > beforeRestart + 2000 })
            stop.withLockedValue { $0 = true }
            try await group.waitForAll()  // every caller returned: nothing hung
        }
        #expect(failures.withLockedValue { $0 } > 0, "the restart should have been noticed")
        for caller in 0..<callers {
            let stored = try await client.send("GET", "restart:\(caller)").int ?? 0
            #expect(stored >= acknowledged.withLockedValue { $0[caller] })
        }
        await client.shutdown()
        try await server.shutdown()
    }
}
