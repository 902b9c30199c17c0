import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import UnixSignals
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernAI
import TernWorker

/// Runs `services` until SIGINT or SIGTERM, then shuts them down gracefully.
func runUntilSignalled(_ services: [any Service], logger: Logger) async throws {
    let group = ServiceGroup(configuration: .init(
        services: services.map { .init(service: $0) },
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    try await group.run()
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the database migrations.")

    func run() async throws {
        let logger = Environment.logger("tern.migrate")
        let applied = try await withClients(Environment(), logger: logger) { store, _ in try await store.migrate() }
        print(applied.isEmpty ? "database is up to date" : "applied migrations \(applied.map(String.init).joined(separator: ", "))")
    }
}

/// Prints the search statement, so a benchmark can run the very SQL the API runs.
struct SearchSQL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search-sql", abstract: "Print the SQL of POST /v1/search (parameters $1 to $8).", shouldDisplay: false)

    func run() {
        print(Store.searchSQL)
    }
}

struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api", abstract: "Run the HTTP API and web UI.")

    func run() async throws {
        runTasksOnEventLoops()
        let environment = Environment()
        let logger = Environment.logger("tern.api")
        var configuration = API.Configuration()
        configuration.host = environment["TERN_HOST"] ?? "127.0.0.1"
        configuration.port = try environment.int("TERN_PORT", default: 8080)
        let catalogue = try environment.catalogue(resolvingKeys: false)
        configuration.models = catalogue.chat.map(\.name)
        configuration.embeddingModels = catalogue.embedding.map(\.name)
        configuration.metricsToken = environment["TERN_METRICS_TOKEN"]
        let perKey = try environment.int("TERN_RATE_LIMIT_KEY_RPM", default: 600)
        let perUser = try environment.int("TERN_RATE_LIMIT_USER_RPM", default: 1200)
        configuration.requestsPerMinutePerKey = perKey > 0 ? perKey : nil
        configuration.requestsPerMinutePerUser = perUser > 0 ? perUser : nil
        configuration.rateLimitBurst = max(1, try environment.int("TERN_RATE_LIMIT_BURST", default: 60))
        let tokensPerKey = try environment.int("TERN_RATE_LIMIT_KEY_TPM", default: 200_000)
        let tokensPerUser = try environment.int("TERN_RATE_LIMIT_USER_TPM", default: 400_000)
        configuration.tokensPerMinutePerKey = tokensPerKey > 0 ? tokensPerKey : nil
        configuration.tokensPerMinutePerUser = tokensPerUser > 0 ? tokensPerUser : nil
        configuration.bcryptCost = UInt8(clamping: max(4, min(31, try environment.int("TERN_BCRYPT_COST", default: 12))))
        configuration.secureCookies = environment["TERN_SECURE_COOKIES"] == "1"
        configuration.allowSignup = environment["TERN_SIGNUP"] != "0"
        let admission = try environment.int("TERN_ADMISSION_BACKLOG", default: 8_000)
        configuration.admissionBacklog = admission > 0 ? admission : nil
        let postgres = PostgresClient(configuration: try environment.database, backgroundLogger: logger)
        let redis = RedisClient(configuration: try environment.redis, logger: logger)
        let queue = try environment.queue(redis)
        let embeddingQueue = try environment.embeddingQueue(redis)
        let api = API(
            configuration: configuration, store: Store(client: postgres, logger: logger), redis: redis,
            queue: queue, events: JobEvents(queue: queue), processMetrics: ProcessMetrics.registry, logger: logger,
            embeddingQueue: embeddingQueue, embeddingEvents: JobEvents(queue: embeddingQueue))
        try await runUntilSignalled([postgres, redis, api.application()], logger: logger)
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Run a job worker.")

    @Option(help: "Jobs this process runs at the same time (default: TERN_WORKER_CONCURRENCY or 4).")
    var concurrency: Int?

    func run() async throws {
        runTasksOnEventLoops()
        let environment = Environment()
        let logger = Environment.logger("tern.worker")
        var configuration = JobWorker.Configuration()
        configuration.concurrency = try concurrency ?? environment.int("TERN_WORKER_CONCURRENCY", default: 4)
        guard configuration.concurrency > 0 else { throw ValidationError("concurrency must be at least 1") }
        // Metrics are recorded from the start only if the backend is in place before the worker runs.
        if try environment.int("TERN_WORKER_METRICS_PORT", default: 0) > 0 { _ = ProcessMetrics.registry }
        let postgres = PostgresClient(configuration: try environment.database, backgroundLogger: logger)
        let redis = RedisClient(configuration: try environment.redis, logger: logger)
        let queue = try environment.queue(redis)
        let catalogue = try environment.catalogue(resolvingKeys: true)
        try await queue.setLimits(of: catalogue.chat)
        let embeddingSlots = catalogue.embedding.map(\.slots).max() ?? 1
        let httpClient = try environment.upstreamHTTPClient(connections: max(configuration.concurrency, embeddingSlots))
        func routes(_ models: [ModelCatalogue.Model]) throws -> [ModelRoute] {
            try models.map { model in try ModelRoute(model, httpClient: httpClient) { try environment.withCallSettings($0) } }
        }
        let store = Store(client: postgres, logger: logger)
        var handlers: [String: any JobHandler] = [:]
        var retriever: DocumentRetriever?
        var services: [any Service] = [postgres, redis]
        // Embedding jobs have a queue of their own, claimed in batches: one upstream request
        // (and one of the model's slots) per batch. Documents are ingested through it, and
        // chats with documents embed their question through it.
        if let embeddingModel = catalogue.embedding.first {
            let embeddingQueue = try environment.embeddingQueue(redis)
            retriever = DocumentRetriever(
                store: store, embeddingQueue: embeddingQueue, embeddingEvents: JobEvents(queue: embeddingQueue), model: embeddingModel.name)
            handlers[DocumentIngestJob.type] = IngestionJobHandler(
                events: JobEvents(queue: queue), store: store, embeddingQueue: embeddingQueue,
                embeddingEvents: JobEvents(queue: embeddingQueue), logger: logger)
            try await embeddingQueue.setLimits(of: catalogue.embedding)
            var batches = JobWorker.Configuration()
            batches.name = configuration.name + "-embeddings"
            batches.concurrency = embeddingSlots
            batches.batchSize = try environment.positive("TERN_EMBEDDING_BATCH", default: 32)
            let handler = EmbeddingJobHandler(
                events: JobEvents(queue: embeddingQueue), store: store,
                routes: try routes(catalogue.embedding), budget: TokenBudget(redis: redis), logger: logger)
            services.append(JobWorker(configuration: batches, queue: embeddingQueue, handlers: [EmbeddingJob.type: handler], logger: logger))
        }
        handlers[ChatJob.type] = ChatJobHandler(
            queue: queue, events: JobEvents(queue: queue), store: store, routes: try routes(catalogue.chat), budget: TokenBudget(redis: redis),
            retriever: retriever, logger: logger)
        services.append(JobWorker(configuration: configuration, queue: queue, handlers: handlers, logger: logger))
        let metricsPort = try environment.int("TERN_WORKER_METRICS_PORT", default: 0)
        if metricsPort > 0 {
            services.append(ProcessMetrics.server(
                registry: ProcessMetrics.registry, host: environment["TERN_HOST"] ?? "127.0.0.1", port: metricsPort,
                token: environment["TERN_METRICS_TOKEN"], logger: logger))
        }
        try await runUntilSignalled(services, logger: logger)
        try await httpClient.shutdown()
    }
}

extension RedisJobQueue {
    /// Each model's calls across all workers: its deployments' slots and request rates.
    func setLimits(of models: [ModelCatalogue.Model]) async throws {
        for model in models {
            try await setLimits(ProviderLimits(concurrency: model.slots, requestsPerMinute: model.requestsPerMinute), for: model.name)
        }
    }
}
