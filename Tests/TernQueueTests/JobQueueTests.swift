import Foundation
import Testing
import TernQueue
import TernRedis
import TernTestSupport

/// The two implementations of the queue.
enum QueueKind: String, CaseIterable, Sendable {
    case redis
    case memory
}

/// Runs `body` with a fresh queue of `kind` (the Redis one on the real server, its own name).
func withQueue(
    _ kind: QueueKind, lease: Duration = .seconds(30), maximumBacklog: Int? = nil,
    _ body: (any JobQueue) async throws -> Void
) async throws {
    let name = QueueName(TestServices.uniqueName("q"))
    switch kind {
    case .memory:
        try await body(MemoryJobQueue(name: name, lease: lease, maximumBacklog: maximumBacklog))
    case .redis:
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            var configuration = RedisJobQueue.Configuration()
            configuration.lease = lease
            configuration.maximumBacklog = maximumBacklog
            try await body(RedisJobQueue(name: name, client: redis, configuration: configuration))
        }
    }
}

func job(_ tenant: String = "t", type: String = "work", lane: JobLane = .interactive, provider: String? = nil, key: String? = nil) -> NewJob {
    NewJob(type: type, tenant: tenant, payload: #"{"n":1}"#, lane: lane, idempotencyKey: key, provider: provider)
}

/// The same rules, checked on both implementations.
@Suite struct JobQueueTests {
    @Test(arguments: QueueKind.allCases)
    func aJobIsClaimedOnceAndCompletedOnce(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let id = try await queue.enqueue(job()).id
            let claimed = try await queue.claim(worker: "a", maximum: 5).jobs
            #expect(claimed.map(\.id) == [id])
            let job = try #require(claimed.first)
            #expect(job.attempt == 1 && job.type == "work" && job.tenant == "t" && job.payload == #"{"n":1}"#)
            #expect(try await queue.claim(worker: "b", maximum: 5).jobs.isEmpty)  // nobody else gets it
            #expect(try await queue.status(id)?.state == .active)
            #expect(try await queue.complete(job, tokens: nil))
            #expect(try await queue.complete(job, tokens: nil) == false)  // recorded once
            #expect(try await queue.status(id)?.state == .completed)
            let stats = try await queue.stats()
            #expect(stats.ready == 0 && stats.active == 0 && stats.completed == 1)
            #expect(stats.totals["enqueued"] == 1 && stats.totals["completed"] == 1)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aJobWhoseWorkerDiedRunsAgainAfterItsLease(kind: QueueKind) async throws {
        try await withQueue(kind, lease: .milliseconds(200)) { queue in
            let id = try await queue.enqueue(job()).id
            let first = try #require(try await queue.claim(worker: "dead", maximum: 1).jobs.first)
            // "dead" never renews; once its lease runs out the next claim takes the job over.
            var second: ClaimedJob?
            #expect(try await eventually {
                second = try await queue.claim(worker: "alive", maximum: 1).jobs.first
                return second != nil
            })
            #expect(second?.id == id && second?.attempt == 2)
            #expect(try await queue.renew(first) == .lost)
            #expect(try await queue.complete(first, tokens: nil) == false)
            #expect(try await queue.complete(try #require(second), tokens: nil))
            #expect(try await queue.stats().totals["stalled"] == 1)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aJobOutOfAttemptsFailsWithTheReason(kind: QueueKind) async throws {
        try await withQueue(kind, lease: .milliseconds(100)) { queue in
            var new = job()
            new.maximumAttempts = 1
            let id = try await queue.enqueue(new).id
            _ = try await queue.claim(worker: "dead", maximum: 1)
            #expect(try await eventually {
                _ = try await queue.claim(worker: "other", maximum: 1)
                return try await queue.status(id)?.state == .failed
            })
            #expect(try await queue.status(id)?.error?.contains("stopped during attempt 1 of 1") == true)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func failedAttemptsRetryAfterTheirDelayThenGiveUp(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let id = try await queue.enqueue(job()).id
            let first = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            #expect(try await queue.fail(first, code: "x", reason: "upstream busy", decision: .retry(after: .milliseconds(300))) == .delayed)
            let waiting = try await queue.status(id)
            #expect(waiting?.state == .delayed && waiting?.error == "upstream busy")
            var second: ClaimedJob?
            #expect(try await eventually {
                second = try await queue.claim(worker: "w", maximum: 1).jobs.first
                return second != nil
            })
            #expect(second?.attempt == 2)
            #expect(try await queue.fail(try #require(second), code: "bad_input", reason: "cannot be done", decision: .giveUp) == .failed)
            let status = try await queue.status(id)
            #expect(status?.state == .failed && status?.error == "cannot be done")
            #expect(try await queue.stats().totals["retried"] == 1)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func delayedJobsWaitForTheirTime(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            var later = job()
            later.delay = .seconds(3600)
            let laterID = try await queue.enqueue(later).id
            var soon = job()
            soon.delay = .milliseconds(200)
            let soonID = try await queue.enqueue(soon).id
            #expect(try await queue.status(laterID)?.state == .delayed)
            // The job due in an hour is never handed out; the one due soon is, once due.
            var claimed: [JobID] = []
            var reportedNextDue = true
            let due = try await eventually {
                let result = try await queue.claim(worker: "w", maximum: 5)
                claimed += result.jobs.map(\.id)
                if result.jobs.isEmpty, result.nextDueIn == nil { reportedNextDue = false }
                return claimed.contains(soonID)
            }
            #expect(due)
            #expect(reportedNextDue)
            #expect(claimed == [soonID])
            #expect(try await queue.status(laterID)?.state == .delayed)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func interactiveJobsGoBeforeBatchJobs(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let batch = try await queue.enqueue(job(lane: .batch)).id
            let interactive = try await queue.enqueue(job(lane: .interactive)).id
            let order = try await queue.claim(worker: "w", maximum: 2).jobs.map(\.id)
            #expect(order == [interactive, batch])
        }
    }

    @Test(arguments: QueueKind.allCases)
    func tenantsTakeTurns(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            for _ in 0..<200 { _ = try await queue.enqueue(job("a")) }
            var small: Set<JobID> = []
            for _ in 0..<3 { small.insert(try await queue.enqueue(job("b")).id) }
            // One claim at a time, as busy workers claim: b's jobs come within the next six.
            var claimed: [JobID] = []
            for _ in 0..<6 { claimed += try await queue.claim(worker: "w", maximum: 1).jobs.map(\.id) }
            #expect(small.isSubset(of: Set(claimed)))
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aProviderAtItsConcurrencyCapHoldsItsJobsBack(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            try await queue.setLimits(ProviderLimits(concurrency: 2), for: "llm")
            for _ in 0..<5 { _ = try await queue.enqueue(job(provider: "llm")) }
            let free = try await queue.enqueue(job("other")).id  // no provider: not held back
            let first = try await queue.claim(worker: "w", maximum: 10)
            #expect(first.jobs.count == 3)
            #expect(first.jobs.contains { $0.id == free })
            #expect(first.limitedFor != nil)
            #expect(try await queue.claim(worker: "w", maximum: 10).jobs.isEmpty)
            #expect(try await queue.complete(try #require(first.jobs.first { $0.provider == "llm" }), tokens: nil))
            #expect(try await queue.claim(worker: "w", maximum: 10).jobs.count == 1)
            #expect(try await queue.stats().ready == 2)  // waiting, not failed
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aProviderRateLimitSpacesStarts(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            try await queue.setLimits(ProviderLimits(requestsPerMinute: 1), for: "llm")  // one a minute
            for _ in 0..<3 { _ = try await queue.enqueue(job(provider: "llm")) }
            #expect(try await queue.claim(worker: "w", maximum: 3).jobs.count == 1)
            let next = try await queue.claim(worker: "w", maximum: 3)
            #expect(next.jobs.isEmpty)
            let wait = try #require(next.limitedFor)
            #expect(wait > .zero && wait <= .seconds(60))
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aTokenBudgetHoldsBackJobsThatWouldExceedIt(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            try await queue.setLimits(ProviderLimits(tokensPerMinute: 1000), for: "llm")
            var big = job(provider: "llm")
            big.tokens = 800
            _ = try await queue.enqueue(big)
            big.id = JobID()
            _ = try await queue.enqueue(big)
            #expect(try await queue.claim(worker: "w", maximum: 2).jobs.count == 1)
            let held = try await queue.claim(worker: "w", maximum: 2)
            #expect(held.jobs.isEmpty && held.limitedFor != nil)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func theSameIdempotencyKeyReturnsTheFirstJob(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let first = try await queue.enqueue(job(key: "order-42"))
            let again = try await queue.enqueue(job(key: "order-42"))
            #expect(first == .enqueued(first.id))
            #expect(again == .existing(first.id))
            #expect(try await queue.stats().ready == 1)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aFullBacklogRefusesFast(kind: QueueKind) async throws {
        try await withQueue(kind, maximumBacklog: 2) { queue in
            _ = try await queue.enqueue(job())
            _ = try await queue.enqueue(job())
            await #expect(throws: JobQueueError.self) { try await queue.enqueue(job()) }
            _ = try await queue.claim(worker: "w", maximum: 1)
            _ = try await queue.enqueue(job())  // room again
        }
    }

    @Test(arguments: QueueKind.allCases)
    func cancellingRemovesWaitingJobsAndStopsActiveOnes(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            let waiting = try await queue.enqueue(job()).id
            #expect(try await queue.cancel(waiting) == .cancelled)
            #expect(try await queue.claim(worker: "w", maximum: 5).jobs.isEmpty)
            #expect(try await queue.stats().ready == 0)

            let running = try await queue.enqueue(job()).id
            let claimed = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            let (notices, notice) = AsyncStream.makeStream(of: JobID.self)
            // The subscription is in place once a published cancel arrives; retry until then.
            let told = try await withThrowingTaskGroup(of: JobID?.self) { group in
                group.addTask {
                    await queue.followCancellations { notice.yield($0) }
                    return nil
                }
                group.addTask { await notices.first { _ in true } }
                group.addTask {
                    while !Task.isCancelled {
                        #expect(try await queue.cancel(running) == .active)
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            #expect(told == running)
            #expect(try await queue.renew(claimed) == .cancelRequested)
            #expect(try await queue.finishCancelled(claimed))
            #expect(try await queue.status(running)?.state == .cancelled)
            #expect(try await queue.cancel(running) == .cancelled)  // already over: unchanged
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aReleasedJobIsReadyAgainWithoutUsingAnAttempt(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            _ = try await queue.enqueue(job())
            let first = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            #expect(try await queue.release(first))
            let again = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            #expect(again.id == first.id && again.attempt == 1)
            // Same worker, same attempt, yet a new lease: the first claim can no longer act.
            #expect(again.lease != first.lease)
            #expect(try await queue.complete(first, tokens: nil) == false)
            #expect(try await queue.complete(again, tokens: nil))
        }
    }

    @Test(arguments: QueueKind.allCases)
    func aCancelledJobIsNotRetriedOrReleasedAgain(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            for ending in ["fail", "release"] {
                let id = try await queue.enqueue(job()).id
                let claimed = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
                #expect(try await queue.cancel(id) == .active)
                if ending == "fail" {
                    #expect(try await queue.fail(claimed, code: "x", reason: "stopped", decision: .retry(after: .zero)) == .cancelled)
                } else {
                    #expect(try await queue.release(claimed))
                }
                #expect(try await queue.status(id)?.state == .cancelled, "\(ending)")
            }
            #expect(try await queue.claim(worker: "w", maximum: 5).jobs.isEmpty)
        }
    }

    @Test(arguments: QueueKind.allCases)
    func statsShowBacklogAgeAndLiveWorkers(kind: QueueKind) async throws {
        try await withQueue(kind) { queue in
            _ = try await queue.enqueue(job())
            var delayed = job()
            delayed.delay = .seconds(60)
            _ = try await queue.enqueue(delayed)
            try await queue.heartbeat(worker: "w1", types: ["work", "other"], ttl: .seconds(30))
            let stats = try await queue.stats()
            #expect(stats.ready == 1 && stats.delayed == 1)
            #expect(stats.oldestReadyAge != nil)
            #expect(stats.liveWorkers == ["w1"])
            #expect(stats.handledTypes == ["work", "other"])
        }
    }
}

/// What only the Redis queue has: keys for autoscalers, event streams, blocking wake-ups.
@Suite struct RedisJobQueueTests {
    @Test func theBacklogKeyLengthIsTheReadyCount() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("keda")), client: redis)
            for tenant in ["a", "b", "a"] { _ = try await queue.enqueue(job(tenant)) }
            #expect(try await redis.send("LLEN", queue.backlogKey).int == 3)
            _ = try await queue.claim(worker: "w", maximum: 2)
            #expect(try await redis.send("LLEN", queue.backlogKey).int == 1)
        }
    }

    @Test func eachJobHasAnEventStreamFromBeforeItCanRun() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("events")), client: redis)
            let events = JobEvents(queue: queue)
            let id = try await queue.enqueue(job()).id
            #expect(try await events.all(id).map(\.type) == ["queued"])
            let claimed = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            try await events.append(id, ["type": "progress", "done": "1"])
            #expect(try await queue.complete(claimed, tokens: nil))
            #expect(try await events.all(id).map(\.type) == ["queued", "progress", "completed"])
            #expect(try await redis.timeToLive(events.key(id)) > 0)
        }
    }

    @Test func finishedJobsAreTrimmedToTheConfiguredCount() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            var configuration = RedisJobQueue.Configuration()
            configuration.finishedKeep = 5
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("trim")), client: redis, configuration: configuration)
            var first: JobID?
            for _ in 0..<100 {
                let id = try await queue.enqueue(job()).id
                first = first ?? id
                let claimed = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
                #expect(try await queue.complete(claimed, tokens: nil))
            }
            #expect(try await queue.stats().completed == 5)
            #expect(try await queue.status(try #require(first)) == nil)
        }
    }

    @Test func aClaimAfterAWakeUpLoadsItsScriptAgainAfterTheServerForgotIt() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("noscript")), client: redis)
            let id = try await queue.enqueue(job()).id  // leaves a wake-up: the BLPOP returns at once
            _ = try await redis.send("SCRIPT", "FLUSH")  // as a restarted server has no scripts
            #expect(try await queue.claimAfterWake(worker: "w", maximum: 1, batch: false, timeout: .seconds(30)).jobs.map(\.id) == [id])
        }
    }

    @Test func aWaitingWorkerWakesWhenAJobArrives() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("wake")), client: redis)
            _ = try await queue.claim(worker: "w", maximum: 1)  // drains nothing; the queue exists
            try await redis.delete([queue.prefix + "wake"])
            let waited = ContinuousClock.now
            async let woke = queue.claimAfterWake(worker: "w", maximum: 1, batch: false, timeout: .seconds(120))
            _ = try await queue.enqueue(job())
            // Claimed by the wake-up, long before the wait's timeout would have claimed it too.
            #expect(try await woke.jobs.count == 1)
            #expect(ContinuousClock.now - waited < .seconds(60))
        }
    }
}

/// The issue's acceptance checks for fairness, on the real Redis queue.
@Suite struct QueueFairnessTests {
    @Test func aSmallTenantIsServedWithinTwoRoundsOfWorkerSlots() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("fair")), client: redis)
            // Tenant A enqueues 5,000 jobs, then tenant B enqueues 10.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<32 {
                    group.addTask {
                        for _ in stride(from: lane, to: 5000, by: 32) { _ = try await queue.enqueue(job("a")) }
                    }
                }
                try await group.waitForAll()
            }
            var small: Set<JobID> = []
            for _ in 0..<10 { small.insert(try await queue.enqueue(job("b")).id) }
            // 4 workers with 4 slots each claim as JobWorker does: as many as they have free.
            let workers = 4, slots = 4
            var order: [JobID] = []
            while !small.isSubset(of: Set(order)), order.count < 5010 {
                for worker in 0..<workers {
                    order += try await queue.claim(worker: "w\(worker)", maximum: slots).jobs.map(\.id)
                }
            }
            let lastSmall = try #require(order.lastIndex { small.contains($0) })
            #expect(lastSmall < 2 * workers * slots, "B's last job was claim number \(lastSmall + 1)")
        }
    }
}

@Suite struct QueueReportTests {
    @Test func warnsOfWaitingWorkWithoutWorkersAndOfUnhandledTypes() async throws {
        try await withQueue(.redis) { queue in
            _ = try await queue.enqueue(job())
            #expect(try await queue.stats().warnings == ["1 jobs are waiting and no worker is alive"])
            try await queue.heartbeat(worker: "w", types: ["other"], ttl: .seconds(30))
            let claimed = try #require(try await queue.claim(worker: "w", maximum: 1).jobs.first)
            _ = try await queue.fail(claimed, code: "no_handler", reason: "no worker handles jobs of type 'work'", decision: .giveUp)
            let stats = try await queue.stats()
            #expect(stats.warnings == ["1 jobs failed because no worker handles their type (live workers handle: other)"])
            let text = stats.prometheusText(queue: queue.name)
            #expect(text.contains("tern_queue_jobs{queue=\"\(queue.name)\",state=\"failed\"} 1"))
            #expect(text.contains("tern_queue_events_total{queue=\"\(queue.name)\",event=\"failed\",code=\"no_handler\"} 1"))
            #expect(text.contains("tern_queue_live_workers{queue=\"\(queue.name)\"} 1"))
            #expect(stats.report(queue: queue.name).contains("WARNING: 1 jobs failed because no worker handles their type"))
        }
    }
}

@Suite struct JobIDTests {
    @Test func readsAndWritesCanonicalUUIDText() throws {
        let uuid = UUID()
        #expect(JobID(uuid).rawValue == uuid.uuidString.lowercased())
        #expect(JobID(uuid.uuidString)?.rawValue == uuid.uuidString.lowercased())
        #expect(try #require(JobID(uuid.uuidString)).uuid == uuid)
        for bad in ["", "x", uuid.uuidString + "0", String(uuid.uuidString.dropLast()) + "g", uuid.uuidString.replacingOccurrences(of: "-", with: "_"), "../../etc/passwd"] {
            #expect(JobID(bad) == nil, "\(bad)")
        }
    }
}
