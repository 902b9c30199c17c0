import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import TernRedis
import TernTestSupport

/// A Redis server of the test's own, so it can be restarted without disturbing other tests.
/// Its ports lie below the system's ephemeral range (32768 and up on Linux), where outgoing
/// connections take theirs, and are checked free; `started` tries new ones if a bind still fails.
final class PrivateRedisServer: Sendable {
    let port: Int
    /// Set when the server also listens with TLS (`tls` given to `init`).
    let tlsPort: Int?
    let directory: URL
    private let tls: (certificate: String, key: String)?
    private let process = NIOLockedValueBox<Process?>(nil)

    /// A server that has started and answers PING; a few tries with new ports if one was taken.
    static func started(tls: (certificate: String, key: String)? = nil) async throws -> PrivateRedisServer {
        var lastError: any Error = PrivateRedisServerError(reason: "never tried")
        for _ in 0..<5 {
            let server = try await PrivateRedisServer(tls: tls)
            do {
                try await server.start()
                return server
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private init(tls: (certificate: String, key: String)?) async throws {
        self.tls = tls
        port = try await Self.unusedPort()
        tlsPort = tls == nil ? nil : try await Self.unusedPort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-redis-\(port)-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    var url: String { "redis://127.0.0.1:\(port)" }
    private var logFile: URL { directory.appendingPathComponent("redis.log") }

    /// Starts the server and returns once it answers on its plain port; if it exits first
    /// (a port taken after all), throws with the end of its log.
    func start() async throws {
        var arguments = ["--bind", "127.0.0.1", "--port", String(port), "--dir", directory.path,
                         "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile", logFile.path]
        if let tls, let tlsPort {
            arguments += ["--tls-port", String(tlsPort), "--tls-cert-file", tls.certificate, "--tls-key-file", tls.key,
                          "--tls-ca-cert-file", tls.certificate, "--tls-auth-clients", "no"]
        }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = arguments
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        process.withLockedValue { $0 = server }
        let ready = await eventually(timeout: .seconds(60)) {
            guard server.isRunning else { return true }
            return (try? await TestServices.withRedis(url: self.url) { try await $0.send("PING") })?.string == "PONG"
        }
        guard ready, server.isRunning else {
            let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            throw PrivateRedisServerError(reason: "redis-server did not start: \(log.suffix(2000))")
        }
    }

    /// A port below the ephemeral range that a listener could just take (and closed again).
    private static func unusedPort() async throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20000..<32768)
            if let listener = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: port).get() {
                try await listener.close()
                return port
            }
        }
        throw PrivateRedisServerError(reason: "no free port between 20000 and 32767")
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

struct PrivateRedisServerError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

@Suite struct RedisRestartTests {
    /// Eight callers write in a loop while the server restarts: every call returns (an error or a
    /// reply, none hangs), the client reconnects by itself, and no acknowledged write is lost.
    @Test func survivesARestartUnderLoadWithoutLosingAcknowledgedWrites() async throws {
        let server = try await PrivateRedisServer.started()
        let client = RedisClient(configuration: try RedisConfiguration(url: server.url))

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
            try await server.start()
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
