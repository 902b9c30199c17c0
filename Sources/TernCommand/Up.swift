import ArgumentParser
import Foundation
import Logging
import TernStore

/// `tern up`: the development supervisor. Starts the embedded services (those whose URL is not
/// configured) through `scripts/services`, migrates, makes a development API key, runs one API
/// and N workers, and on SIGINT or SIGTERM stops everything it started.
struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the whole stack for development.")

    @Option(help: "Worker processes to run.") var workers = 2

    func run() async throws {
        let logger = Environment.logger("tern.up")
        let environment = Environment()
        let root = URL(fileURLWithPath: environment.values["TERN_ROOT"] ?? FileManager.default.currentDirectoryPath)
        let state = URL(fileURLWithPath: environment.values["TERN_STATE"] ?? root.appendingPathComponent(".tern").path)
        let services = ServiceScript(script: root.appendingPathComponent("scripts/services"), logger: logger)
        let signals = SignalWaiter([SIGINT, SIGTERM])

        // A service runs embedded unless its URL is configured; one that already runs (another
        // tern up, or started by hand) is used and left running at exit.
        let embedded = [
            ("redis", "TERN_REDIS_URL"), ("postgres", "TERN_DATABASE_URL"), ("llm", "TERN_LLM_BASE_URL"), ("embeddings", "TERN_EMBEDDING_BASE_URL"),
        ]
            .filter { environment.values[$0.1]?.isEmpty ?? true }.map(\.0)
            .filter { !services.isRunning($0) }
        var childEnvironment = ProcessInfo.processInfo.environment
        for (key, value) in environment.defaults where childEnvironment[key]?.isEmpty ?? true { childEnvironment[key] = value }

        let supervisor = Supervisor(logger: logger)
        do {
            if !embedded.isEmpty { try services.run("start", embedded) }
            let key = try await withClients(Environment(childEnvironment), logger: logger) { store, _ in
                try await store.migrate()
                return try await Self.developmentKey(store: store, file: state.appendingPathComponent("dev-api-key"))
            }
            // The running binary itself, however it was invoked (a bare name found on PATH too).
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            try supervisor.start("api", executable: executable, arguments: ["api"], environment: childEnvironment)
            for index in 1...max(1, workers) {
                try supervisor.start("worker-\(index)", executable: executable, arguments: ["worker"], environment: childEnvironment)
            }
            let port = environment.values["TERN_PORT"] ?? "8080"
            print("""

                Tern is up: http://\(environment.values["TERN_HOST"] ?? "127.0.0.1"):\(port)/
                Development API key: \(key)   (also in \(state.appendingPathComponent("dev-api-key").path))
                Try: curl -N http://127.0.0.1:\(port)/v1/chat/completions -H "Authorization: Bearer \(key)" \\
                       -H 'Content-Type: application/json' \\
                       -d '{"model":"\(environment.model)","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
                Press Ctrl-C to stop.

                """)
            fflush(nil)
            // The model servers are watched: one that stops answering is started again.
            let models = embedded.filter { ["llm", "embeddings"].contains($0) }
            let watcher = Task { await Self.keepRunning(models, services: services, logger: logger) }
            let signal = await signals.next()
            watcher.cancel()
            await watcher.value
            logger.info("stopping", metadata: ["signal": "\(signal)"])
        } catch {
            logger.error("start-up failed", metadata: ["error": "\(error)"])
            await supervisor.stopAll()
            if !embedded.isEmpty { try? services.run("stop", embedded) }
            throw ExitCode.failure
        }
        await supervisor.stopAll()
        if !embedded.isEmpty { try services.run("stop", embedded) }
        logger.info("stopped")
    }

    /// Checks the services every 5 seconds; one that stopped answering (died or hung) is stopped
    /// and started again.
    static func keepRunning(_ names: [String], services: ServiceScript, logger: Logger) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            for name in names where !Task.isCancelled && !services.isRunning(name) {
                logger.warning("restarting a service that stopped answering", metadata: ["service": "\(name)"])
                do {
                    try services.run("stop", [name])
                    try services.run("start", [name])
                } catch {
                    logger.error("restart failed", metadata: ["service": "\(name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Reuses the key in `file` while it is valid; otherwise creates one and writes it there.
    static func developmentKey(store: Store, file: URL) async throws -> String {
        if let saved = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
           try await store.user(forAPIKey: saved) != nil {
            return saved
        }
        let user = try await store.ensureUser(email: "dev@tern.local")
        let key = try await store.createAPIKey(for: user, name: "development")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: file.path, contents: Data((key.secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
        return key.secret
    }
}

/// Runs `scripts/services` for the embedded services.
struct ServiceScript {
    let script: URL
    let logger: Logger

    func run(_ action: String, _ services: [String]) throws {
        guard try exitStatus([action] + services) == 0 else {
            throw ValidationError("scripts/services \(action) \(services.joined(separator: " ")) failed")
        }
    }

    /// Whether the embedded service answers already.
    func isRunning(_ service: String) -> Bool {
        (try? exitStatus(["status", service], quiet: true)) == 0
    }

    private func exitStatus(_ arguments: [String], quiet: Bool = false) throws -> Int32 {
        let process = Process()
        process.executableURL = script
        process.arguments = arguments
        if quiet { process.standardOutput = FileHandle.nullDevice }
        try process.runWithDefaultSignalMask()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
