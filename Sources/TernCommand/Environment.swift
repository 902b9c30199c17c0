import ArgumentParser
import AsyncHTTPClient
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
/// `TERN_PG_PORT`, `TERN_LLM_PORT`, `TERN_EMBEDDING_PORT` change them for both).
struct Environment {
    let values: [String: String]

    init(_ values: [String: String] = ProcessInfo.processInfo.environment) { self.values = values }

    /// The URLs of the embedded services.
    var defaults: [String: String] {
        [
            "TERN_REDIS_URL": "redis://127.0.0.1:\(values["TERN_REDIS_PORT"] ?? "7379")",
            "TERN_DATABASE_URL": "postgres://postgres@127.0.0.1:\(values["TERN_PG_PORT"] ?? "7432")/tern?sslmode=disable",
            "TERN_LLM_BASE_URL": "http://127.0.0.1:\(values["TERN_LLM_PORT"] ?? "7081")/v1",
            "TERN_EMBEDDING_BASE_URL": "http://127.0.0.1:\(values["TERN_EMBEDDING_PORT"] ?? "7082")/v1",
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
        try queue(named: queueName, redis)
    }

    /// The queue of embedding jobs, which workers claim in batches.
    func embeddingQueue(_ redis: RedisClient) throws -> RedisJobQueue {
        try queue(named: QueueName(queueName.rawValue + "-embeddings"), redis)
    }

    private func queue(named name: QueueName, _ redis: RedisClient) throws -> RedisJobQueue {
        var configuration = RedisJobQueue.Configuration()
        configuration.lease = try lease
        let backlog = try int("TERN_QUEUE_MAX_BACKLOG", default: 10_000)
        configuration.maximumBacklog = backlog > 0 ? backlog : nil
        return RedisJobQueue(name: name, client: redis, configuration: configuration)
    }

    /// The models and where they run: the catalogue file `TERN_MODELS_FILE` (see
    /// `ModelCatalogue`), or else one chat model (`TERN_MODEL` on `TERN_LLM_BASE_URL`) and one
    /// embedding model (`TERN_EMBEDDING_MODEL` on `TERN_EMBEDDING_BASE_URL`, unless that is `off`).
    /// Without `resolvingKeys` (the API calls no upstream) no key is read from the catalogue.
    func catalogue(resolvingKeys: Bool) throws -> ModelCatalogue {
        do {
            if let path = values["TERN_MODELS_FILE"], !path.isEmpty {
                return try ModelCatalogue.load(contentsOf: URL(fileURLWithPath: path), environment: values, resolvingKeys: resolvingKeys)
            }
            let slots = try positive("TERN_LLM_SLOTS", default: 4)
            let perMinute = try int("TERN_LLM_RPM", default: 0)
            // The embedded llama-server splits its context (TERN_LLM_CONTEXT) among its slots,
            // and has a tokenizer.
            let embedded = values["TERN_LLM_BASE_URL"]?.isEmpty ?? true
            let window = embedded ? try positive("TERN_LLM_CONTEXT", default: 8192) / slots : nil
            let chat = ModelCatalogue.Model(
                name: model, contextWindow: self["TERN_LLM_CONTEXT_WINDOW"] == nil ? window : try positive("TERN_LLM_CONTEXT_WINDOW", default: 1),
                systemPrompt: self["TERN_SYSTEM_PROMPT"],
                deployments: [.init(
                    name: "default", baseURL: self["TERN_LLM_BASE_URL"]!, upstreamModel: self["TERN_LLM_MODEL"] ?? model,
                    apiKey: self["TERN_LLM_API_KEY"], slots: slots, requestsPerMinute: perMinute > 0 ? perMinute : nil, tokenizer: embedded)])
            var embedding: [ModelCatalogue.Model] = []
            if let url = self["TERN_EMBEDDING_BASE_URL"], url != "off" {
                let name = self["TERN_EMBEDDING_MODEL"] ?? "all-minilm-l6-v2"
                embedding.append(.init(name: name, deployments: [.init(
                    name: "default", baseURL: url, upstreamModel: self["TERN_EMBEDDING_UPSTREAM_MODEL"] ?? name,
                    apiKey: self["TERN_EMBEDDING_API_KEY"], slots: try positive("TERN_EMBEDDING_SLOTS", default: 4))]))
            }
            let catalogue = ModelCatalogue(chat: [chat], embedding: embedding)
            try catalogue.validate()
            return catalogue
        } catch let error as ModelCatalogueError {
            throw ValidationError("\(error)")
        }
    }

    /// The model call's timeouts and attempts: `TERN_LLM_FIRST_TOKEN_TIMEOUT_SECONDS` (60),
    /// `TERN_LLM_TOTAL_TIMEOUT_SECONDS` (600), `TERN_LLM_ATTEMPTS` (3). Gaps and connecting are
    /// bounded by the HTTP client (`upstreamHTTPClient`).
    func withCallSettings(_ configuration: OpenAIProvider.Configuration) throws -> OpenAIProvider.Configuration {
        var configuration = configuration
        configuration.firstTokenTimeout = .seconds(try positive("TERN_LLM_FIRST_TOKEN_TIMEOUT_SECONDS", default: 60))
        configuration.totalTimeout = .seconds(try positive("TERN_LLM_TOTAL_TIMEOUT_SECONDS", default: 600))
        configuration.maximumAttempts = try positive("TERN_LLM_ATTEMPTS", default: 3)
        return configuration
    }

    /// The HTTP client for model calls, `connections` per upstream: `TERN_LLM_GAP_TIMEOUT_SECONDS`
    /// (60) bounds the wait for each piece, `TERN_LLM_CONNECT_TIMEOUT_SECONDS` (10) connecting.
    func upstreamHTTPClient(connections: Int) throws -> HTTPClient {
        OpenAIProvider.httpClient(
            connections: connections,
            gapTimeout: .seconds(Int64(try positive("TERN_LLM_GAP_TIMEOUT_SECONDS", default: 60))),
            connectTimeout: .seconds(Int64(try positive("TERN_LLM_CONNECT_TIMEOUT_SECONDS", default: 10))))
    }

    /// A whole number of at least 1.
    func positive(_ key: String, default value: Int) throws -> Int {
        let number = try int(key, default: value)
        guard number > 0 else { throw ValidationError("\(key) must be at least 1, not \(number)") }
        return number
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
