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
/// first thing in the command. `TERN_THREADS` sets the number of event loops (default: one per
/// core); on a small machine shared with Redis and other processes, one per process is faster.
func runTasksOnEventLoops() {
    if let threads = ProcessInfo.processInfo.environment["TERN_THREADS"].flatMap(Int.init), threads > 0 {
        NIOSingletons.groupLoopCountSuggestion = threads
    }
    _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}
