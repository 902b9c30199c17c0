import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// Tern's PostgreSQL database: migrations and the repositories of every layer.
/// Every statement binds its values as parameters (PostgresQuery interpolation).
public struct Store: Sendable {
    public let client: PostgresClient
    /// The client with a deadline, for every statement but the migrations'.
    let database: Database
    let logger: Logger

    /// `deadline`: how long a statement may wait for PostgreSQL to begin answering before it
    /// fails as unavailable (`StoreError.unavailable`).
    public init(client: PostgresClient, deadline: Duration = .seconds(15), logger: Logger = Logger(label: "tern.store")) {
        self.client = client
        self.database = Database(client: client, deadline: deadline)
        self.logger = logger
    }

    /// Builds the client configuration from a `postgres://user[:password]@host[:port]/database`
    /// URL. `?sslmode=disable` turns TLS off, `require` (or `verify-full`) insists on it; without
    /// it TLS is used when the server offers it, as libpq's default `prefer` does.
    public static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
              components.scheme == "postgres" || components.scheme == "postgresql",
              let host = components.host, !host.isEmpty
        else { throw StoreError(.invalidConfiguration, "database URL must look like postgres://user@host:port/database") }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let tls: PostgresClient.Configuration.TLS
        switch components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer" {
        case "disable": tls = .disable
        case "allow", "prefer": tls = .prefer(TLSConfiguration.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(TLSConfiguration.makeClientConfiguration())
        default: throw StoreError(.invalidConfiguration, "sslmode must be disable, prefer, require, verify-ca or verify-full")
        }
        var configuration = PostgresClient.Configuration(
            host: host,
            port: components.port ?? 5432,
            username: components.user ?? "postgres",
            password: components.password,
            database: database.isEmpty ? nil : database,
            tls: tls
        )
        configuration.options.maximumConnections = 20
        // The pool arms timers with `Task.sleep` (Dispatch's timers) each time a connection goes
        // idle: a keep-alive, and an idle timeout for connections past the minimum. After every
        // statement, that was a fifth of the API's CPU in a run of searches (perf: Dispatch's
        // threads at 21% of the samples, 1% without). Without keep-alives, a connection that
        // PostgreSQL closes is still dropped when its socket closes; one lost without a word
        // fails its next statement or runs into the store's deadline (`Database`).
        configuration.options.keepAliveBehavior = nil
        configuration.options.minimumConnections = 1
        return configuration
    }

    /// Applies every migration not yet applied, each in its own transaction, under an advisory
    /// lock so concurrent starters do not race. Returns the versions applied now.
    @discardableResult
    public func migrate() async throws -> [Int] {
        var applied: [Int] = []
        for migration in Migrations.all {
            let didApply = try await client.withTransaction(logger: logger) { connection -> Bool in
                try await connection.query("SELECT pg_advisory_xact_lock(7305960)", logger: logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                let rows = try await connection.query("SELECT 1 FROM schema_migrations WHERE version = \(migration.version)", logger: logger)
                for try await _ in rows { return false }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger)
                return true
            }
            if didApply {
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                applied.append(migration.version)
            }
        }
        return applied
    }
}

/// A store failure with a stable code and a message safe to log (no SQL, no values).
public struct StoreError: Error, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidConfiguration
        case notFound
        /// A job's row is not (yet) stored: the API stores it while the job is already queued.
        case jobNotStored
        /// PostgreSQL did not answer in time (`Store.init`'s deadline).
        case unavailable
    }
    public let code: Code
    public let message: String
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "store \(code.rawValue): \(message)" }

    /// Whether `error` says the database could not be reached or went away (not that a
    /// statement was wrong): the deadline passed, a connection failed or closed, or the server
    /// is shutting down or starting (SQLSTATE classes 08 and 57, but not 57014, a statement
    /// cancelled).
    public static func isUnavailable(_ error: any Error) -> Bool {
        if let error = error as? StoreError { return error.code == .unavailable }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed: return true
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || (state.hasPrefix("57") && state != "57014")
        default: return false
        }
    }
}

extension Store {
    /// Checks that the database answers, within 3 seconds.
    public func ping() async throws {
        try await Database(client: client, deadline: .seconds(3)).query("SELECT 1", logger: logger)
    }
}
