import Foundation

extension Process {
    /// Starts the process with no signals blocked.
    ///
    /// A child inherits the signal mask of the thread that spawns it, and the threads Swift
    /// concurrency runs on block most signals: a server started from one would never see SIGTERM
    /// and could not be stopped. Foundation's `run()` spawns on the calling thread, so the mask is
    /// cleared around it.
    func runWithDefaultSignalMask() throws {
        var empty = sigset_t()
        var previous = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try run()
    }
}
