import ArgumentParser

/// The `tern` executable: every deployment runs this one binary.
@main
struct Tern: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "Tern: a self-hostable platform for AI products.",
        subcommands: [Up.self, APICommand.self, WorkerCommand.self, QueueCommand.self, Migrate.self, MockLLM.self, SearchSQL.self]
    )
}
