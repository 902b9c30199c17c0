import Foundation
import NIOCore
import NIOPosix

/// Runs Swift concurrency's tasks on the NIO event loops that carry the process's sockets.
///
/// The API and the workers do all their I/O through SwiftNIO (Redis, Postgres, HTTP), so a task
/// that awaits a reply is resumed on the very event loop that received it, instead of hopping
/// to the separate concurrency pool and back for every call. On two cores this lifts pipelined
/// Redis throughput by about a third (bench/redis). The price: nothing in these processes may
/// block a thread (CPU-heavy work such as password hashing goes to `NIOThreadPool`). Call once,
/// first thing in the command. `TERN_THREADS` sets the number of event loops: by default one per
/// core, but one on a machine of two cores or fewer. There the API, the workers, Redis and
/// PostgreSQL share the cores, and a second loop per process only adds hand-overs between
/// threads: with one, a chat's first token through llama-server came about 1 ms sooner
/// (3.0-3.5 ms added instead of 4.3-4.6, in turns with direct calls) at the same requests/s.
func runTasksOnEventLoops() {
    NIOSingletons.groupLoopCountSuggestion = eventLoopCount(ProcessInfo.processInfo.environment["TERN_THREADS"], cores: System.coreCount)
    _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}

/// The event loops a process runs: `TERN_THREADS` if it is a positive number, else one per
/// core, or one where there are two cores or fewer.
func eventLoopCount(_ setting: String?, cores: Int) -> Int {
    if let threads = setting.flatMap(Int.init), threads > 0 { return threads }
    return cores <= 2 ? 1 : cores
}
