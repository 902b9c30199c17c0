import Foundation
import Logging
import PostgresNIO
import TernRedis
import TernStore

/// The real services the integration tests use, as started by `scripts/test`
/// (`TERN_TEST_REDIS_URL`, `TERN_TEST_DATABASE_URL`, `TERN_TEST_LLM_URL`).
public enum TestServices {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    public static var redisURL: String { environment["TERN_TEST_REDIS_URL"] ?? "redis://127.0.0.1:17379" }
    public static var databaseURL: String { environment["TERN_TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:17432/tern?sslmode=disable" }
    /// The mock model server (`tern mock-llm`), with `/v1`.
    public static var llmURL: String { environment["TERN_TEST_LLM_URL"] ?? "http://127.0.0.1:17090/v1" }
    /// A second mock whose answers take a while (pieces 20 ms apart), for tests of limits.
    public static var slowLLMURL: String { environment["TERN_TEST_SLOW_LLM_URL"] ?? "http://127.0.0.1:17092/v1" }

    public static let logger: Logger = {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .error
        return logger
    }()

    public static func redisClient() throws -> RedisClient {
        RedisClient(configuration: try RedisConfiguration(url: redisURL), logger: logger)
    }

    /// Runs `body` with a migrated store on the test database.
    public static func withStore<Result: Sendable>(_ body: @Sendable (Store) async throws -> Result) async throws -> Result {
        let client = PostgresClient(configuration: try Store.configuration(url: databaseURL), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            let store = Store(client: client, logger: logger)
            try await store.migrate()
            return try await body(store)
        }
    }

    /// Runs `body` with a store whose server is away (port 1, tcpmux: nothing listens there, so
    /// every connection is refused), giving up on statements after `deadline`.
    public static func withStoreAway<Result: Sendable>(deadline: Duration, _ body: @Sendable (Store) async throws -> Result) async throws -> Result {
        let client = PostgresClient(configuration: try Store.configuration(url: "postgres://postgres@127.0.0.1:1/tern?sslmode=disable"))
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(Store(client: client, deadline: deadline))
        }
    }

    /// A name no other test uses, for keys, queues and e-mails.
    public static func uniqueName(_ prefix: String) -> String { "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())" }
}

/// Waits until `condition` holds, checking every 50 ms, for at most `timeout`.
/// Returns whether it held: a deadline, never a fixed sleep, so a loaded machine only slows it.
public func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

extension TestServices {
    /// Runs `body` with a client of the test Redis (or of `url`), shut down afterwards.
    /// `configure` adjusts the configuration first (timeouts, pool sizes).
    @discardableResult
    public static func withRedis<Result: Sendable>(
        url: String? = nil, configure: (inout RedisConfiguration) -> Void = { _ in },
        _ body: (RedisClient) async throws -> Result
    ) async throws -> Result {
        var configuration = try RedisConfiguration(url: url ?? redisURL)
        configure(&configuration)
        let client = RedisClient(configuration: configuration, logger: logger)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
