import ArgumentParser
import Foundation
import Logging
import NIOCore
import PostgresNIO
import TernAI
import TernQueue
import TernRedis
import TernStore

/// Configuration read from `TERN_*` environment variables. Without URLs, the services are the
/// embedded ones of `tern up`, on the private ports of scripts/lib.sh (`TERN_REDIS_PORT`,
/// `TERN_PG_PORT`, `TERN_LLM_PORT` change them for both).
struct Environment {
    let values: [String: String]

    init(_ values: [String: String] = ProcessInfo.processInfo.environment) { self.values = values }

    /// The URLs of the embedded services.
    var defaults: [String: String] {
        [
            "TERN_REDIS_URL": "redis://127.0.0.1:\(values["TERN_REDIS_PORT"] ?? "7379")",
            "TERN_DATABASE_URL": "postgres://postgres@127.0.0.1:\(values["TERN_PG_PORT"] ?? "7432")/tern?sslmode=disable",
            "TERN_LLM_BASE_URL": "http://127.0.0.1:\(values["TERN_LLM_PORT"] ?? "7081")/v1",
        ]
    }

    subscript(key: String) -> String? { values[key].flatMap { $0.isEmpty ? nil : $0 } ?? defaults[key] }

    func int(_ key: String, default value: Int) throws -> Int {
        guard let text = values[key], !text.isEmpty else { return value }
        guard let number = Int(text) else { throw ValidationError("\(key) must be a whole number, not '\(text)'") }
        return number
    }

    var redis: RedisConfiguration { get throws { try RedisConfiguration(url: self["TERN_REDIS_URL"]!) } }
    var database: PostgresClient.Configuration { get throws { try Store.configuration(url: self["TERN_DATABASE_URL"]!) } }
    /// The public model name clients use.
    var model: String { self["TERN_MODEL"] ?? "smollm2-135m" }
    var queueName: QueueName { QueueName(self["TERN_QUEUE"] ?? "chat") }
    var lease: Duration { get throws { .seconds(try int("TERN_JOB_LEASE_SECONDS", default: 30)) } }

    /// The job queue on `redis`, as configured.
    func queue(_ redis: RedisClient) throws -> RedisJobQueue {
        var configuration = RedisJobQueue.Configuration()
        configuration.lease = try lease
        let backlog = try int("TERN_QUEUE_MAX_BACKLOG", default: 10_000)
        configuration.maximumBacklog = backlog > 0 ? backlog : nil
        return RedisJobQueue(name: queueName, client: redis, configuration: configuration)
    }

    /// Limits every worker applies to the model's upstream: `TERN_LLM_SLOTS` requests at once
    /// (the model server's parallel slots), `TERN_LLM_RPM` starts per minute if set.
    var providerLimits: ProviderLimits {
        get throws {
            let slots = try int("TERN_LLM_SLOTS", default: 4)
            let perMinute = try int("TERN_LLM_RPM", default: 0)
            return ProviderLimits(concurrency: slots > 0 ? slots : nil, requestsPerMinute: perMinute > 0 ? perMinute : nil)
        }
    }

    var provider: OpenAIProvider.Configuration {
        var configuration = OpenAIProvider.Configuration(
            baseURL: self["TERN_LLM_BASE_URL"]!, apiKey: self["TERN_LLM_API_KEY"], model: self["TERN_LLM_MODEL"] ?? model)
        if let seconds = values["TERN_LLM_TIMEOUT_SECONDS"].flatMap(Int64.init) { configuration.headTimeout = .seconds(seconds) }
        if let attempts = values["TERN_LLM_ATTEMPTS"].flatMap(Int.init), attempts > 0 { configuration.maximumAttempts = attempts }
        return configuration
    }

    /// The embedding model's public name, if an embedding upstream is configured
    /// (`TERN_EMBEDDING_BASE_URL`; `TERN_EMBEDDING_MODEL` names it, all-minilm-l6-v2 by default).
    var embeddingModel: String? {
        self["TERN_EMBEDDING_BASE_URL"] == nil ? nil : self["TERN_EMBEDDING_MODEL"] ?? "all-minilm-l6-v2"
    }

    /// The embedding upstream (`TERN_EMBEDDING_UPSTREAM_MODEL` is its own name for the model).
    var embeddingProvider: OpenAIProvider.Configuration? {
        guard let url = self["TERN_EMBEDDING_BASE_URL"], let model = embeddingModel else { return nil }
        return OpenAIProvider.Configuration(
            baseURL: url, apiKey: self["TERN_EMBEDDING_API_KEY"], model: self["TERN_EMBEDDING_UPSTREAM_MODEL"] ?? model)
    }

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = ProcessInfo.processInfo.environment["TERN_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }
}

/// Runs `body` with a started Postgres client and Redis client, and shuts both down after.
func withClients<Result: Sendable>(
    _ environment: Environment, logger: Logger,
    _ body: @Sendable (Store, RedisClient) async throws -> Result
) async throws -> Result {
    let postgres = PostgresClient(configuration: try environment.database, backgroundLogger: logger)
    let redis = RedisClient(configuration: try environment.redis, logger: logger)
    return try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask {
            await postgres.run()
            return nil
        }
        defer { group.cancelAll() }
        let result = try await body(Store(client: postgres, logger: logger), redis)
        await redis.shutdown()
        return result
    }
}
