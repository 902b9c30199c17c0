import NIOConcurrencyHelpers
import ServiceLifecycle
import Testing
import TernQueue
import TernTestSupport

/// A handler driven by a closure.
struct ClosureHandler: JobHandler {
    let body: @Sendable (ClaimedJob) async throws -> JobOutcome
    func handle(_ job: ClaimedJob) async throws -> JobOutcome { try await body(job) }
}

/// Runs a worker on `queue` while `body` runs, then stops it gracefully.
func withWorker(
    _ queue: any JobQueue, handlers: [String: any JobHandler], concurrency: Int = 4, gracePeriod: Duration = .seconds(30),
    _ body: () async throws -> Void
) async throws {
    var configuration = JobWorker.Configuration()
    configuration.concurrency = concurrency
    configuration.idleWait = .milliseconds(50)
    configuration.gracePeriod = gracePeriod
    configuration.retry = RetryPolicy(initial: .milliseconds(20), maximum: .milliseconds(100))
    let worker = JobWorker(configuration: configuration, queue: queue, handlers: handlers, logger: TestServices.logger)
    let group = ServiceGroup(configuration: .init(services: [.init(service: worker)], logger: TestServices.logger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// A handler that notes it started, then runs until cancelled.
func endlessHandler(started: NIOLockedValueBox<Bool>) -> ClosureHandler {
    ClosureHandler { _ in
        started.withLockedValue { $0 = true }
        try await Task.sleep(for: .seconds(3600))
        return JobOutcome()
    }
}

@Suite struct JobWorkerTests {
    @Test(arguments: QueueKind.allCases)
    func runsJobsRetriesFailuresAndFailsUnknownTypes(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let attempts = NIOLockedValueBox([JobID: Int]())
            let flaky = ClosureHandler { job in
                let count = attempts.withLockedValue { $0[job.id, default: 0] += 1; return $0[job.id]! }
                if count == 1 { throw JobFailure("first try fails") }
                return JobOutcome()
            }
            let refusing = ClosureHandler { _ in throw JobFailure(code: "bad_input", "never works", retry: .never) }
            try await withWorker(queue, handlers: ["flaky": flaky, "refused": refusing]) {
                let retried = try await queue.enqueue(NewJob(type: "flaky", tenant: "t", payload: "")).id
                let refused = try await queue.enqueue(NewJob(type: "refused", tenant: "t", payload: "")).id
                let unknown = try await queue.enqueue(NewJob(type: "nobody-runs-this", tenant: "t", payload: "")).id
                #expect(try await eventually {
                    let states = try await [retried, refused, unknown].asyncMap { try await queue.status($0)?.state }
                    return states == [.completed, .failed, .failed]
                })
                #expect(attempts.withLockedValue { $0[retried] } == 2)
                #expect(try await queue.status(refused)?.error == "never works")
                #expect(try await queue.status(unknown)?.error == "no worker handles jobs of type 'nobody-runs-this'")
            }
        }
    }

    @Test(arguments: QueueKind.allCases)
    func cancellingARunningJobStopsItsHandler(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let started = NIOLockedValueBox(false)
            let endless = endlessHandler(started: started)
            try await withWorker(queue, handlers: ["endless": endless]) {
                let id = try await queue.enqueue(NewJob(type: "endless", tenant: "t", payload: "")).id
                #expect(await eventually { started.withLockedValue { $0 } })
                #expect(try await eventually {
                    _ = try await queue.cancel(id)  // repeated until the worker's subscription hears it
                    return try await queue.status(id)?.state == .cancelled
                })
            }
        }
    }

    @Test(arguments: QueueKind.allCases)
    func shutdownReturnsJobsStillRunningAfterTheGracePeriod(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let started = NIOLockedValueBox(false)
            let endless = endlessHandler(started: started)
            let id = try await queue.enqueue(NewJob(type: "endless", tenant: "t", payload: "")).id
            try await withWorker(queue, handlers: ["endless": endless], gracePeriod: .milliseconds(100)) {
                #expect(await eventually { started.withLockedValue { $0 } })
            }
            let status = try await queue.status(id)
            #expect(status?.state == .ready)
            #expect(status?.attempt == 0)
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
