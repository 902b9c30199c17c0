// Drives Tern's Redis client the way redis-benchmark drives the server, for bench/redis:
// C connections on T event loop threads, each sending SET or GET in batches of P commands
// (P = 1: one at a time), until N commands are done. Prints one line: "<command> <requests per second>".
import Foundation
import NIOCore
import NIOPosix
import TernRedis

@main
enum RedisBench {
    static func main() async throws {
        var options: [String: String] = [:]
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let name = arguments.next(), let value = arguments.next() { options[name] = value }
        let port = Int(options["--port"] ?? "") ?? 6379
        let requests = Int(options["--requests"] ?? "") ?? 100_000
        let connections = Int(options["--connections"] ?? "") ?? 50
        let pipeline = max(1, Int(options["--pipeline"] ?? "") ?? 1)
        let command = options["--command"] ?? "set"
        // Event loop threads, to match redis-benchmark's --threads.
        if let threads = options["--threads"].flatMap(Int.init) { NIOSingletons.groupLoopCountSuggestion = threads }
        // As `tern api` and `tern worker` run: tasks on the event loops (see runTasksOnEventLoops).
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()

        var configuration = RedisConfiguration()
        configuration.port = port
        configuration.protocolVersion = 2  // as redis-benchmark speaks
        var opened: [RedisConnection] = []
        for _ in 0..<connections { opened.append(try await RedisConnection.connect(to: configuration)) }
        let value = ByteBuffer(repeating: UInt8(ascii: "x"), count: 3)  // redis-benchmark's default 3-byte value
        let batch = (0..<pipeline).map { _ in
            command == "get" ? RESPCommand("GET", "key:__rand_int__") : RESPCommand("SET", "key:__rand_int__", value)
        }
        let perConnection = requests / connections / pipeline
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for connection in opened {
                group.addTask {
                    for _ in 0..<perConnection {
                        if pipeline == 1 {
                            _ = try await connection.send(batch[0])
                        } else {
                            _ = try await connection.pipeline(batch)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        opened.forEach { $0.close() }
        print(command, String(format: "%.0f", Double(perConnection * connections * pipeline) / seconds))
    }
}
