import ArgumentParser
import Foundation
import TernQueue
import TernRedis

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "Inspect the job queue.", subcommands: [QueueStatus.self])
}

struct QueueStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the queue's depth per state, the oldest wait, live workers and warnings.",
        discussion: "Exits with status 3 when there is a warning (jobs waiting with no live worker, jobs of a type no worker runs), for monitoring.")

    @Flag(help: "Print Prometheus' text format instead.") var prometheus = false

    func run() async throws {
        let environment = Environment()
        let redis = RedisClient(configuration: try environment.redis, logger: Environment.logger("tern.queue"))
        let queue = try environment.queue(redis)
        let stats = try await queue.stats()
        await redis.shutdown()
        print(prometheus ? stats.prometheusText(queue: queue.name) : stats.report(queue: queue.name))
        if !stats.warnings.isEmpty { throw ExitCode(3) }
    }
}
