import Testing
import TernQueue
import TernRedis
import TernTestSupport

/// Against the real redis-server started by scripts/test; each test has its own queue.
@Suite struct JobQueueTests {
    @Test func enqueuedJobIsClaimedOnceAndAcknowledged() async throws {
        try await TestServices.withRedis { redis in
            let queue = JobQueue(name: QueueName(TestServices.uniqueName("q")), client: redis)
            try await queue.prepare()
            let id = JobID()
            try await queue.enqueue(id: id, type: "chat", payload: #"{"x":1}"#)
            let job = try #require(try await queue.claim(consumer: "a", block: .seconds(5)))
            #expect(job.id == id && job.type == "chat" && job.payload == #"{"x":1}"# && job.attempt == 1)
            // Nobody else gets it while it is held.
            #expect(try await queue.claim(consumer: "b", block: .milliseconds(100)) == nil)
            #expect(try await queue.acknowledge(job, consumer: "a"))
            #expect(try await queue.depth() == 0)
            try await redis.send("DEL", queue.streamKey)
        }
    }

    @Test func claimBlocksOnTheServerUntilAJobArrives() async throws {
        try await TestServices.withRedis { redis in
            let queue = JobQueue(name: QueueName(TestServices.uniqueName("q")), client: redis)
            try await queue.prepare()
            let id = JobID()
            try await withThrowingTaskGroup(of: ClaimedJob?.self) { group in
                group.addTask { try await queue.claim(consumer: "a", block: .seconds(30)) }
                try await queue.enqueue(id: id, type: "chat", payload: "{}")
                let job = try await group.next()
                #expect(job??.id == id)
            }
            try await redis.send("DEL", queue.streamKey)
        }
    }

    @Test func jobOfADeadWorkerIsDeliveredAgainAfterItsLease() async throws {
        try await TestServices.withRedis { redis in
            let queue = JobQueue(name: QueueName(TestServices.uniqueName("q")), client: redis, lease: .milliseconds(300))
            try await queue.prepare()
            let id = JobID()
            try await queue.enqueue(id: id, type: "chat", payload: "{}")
            let first = try #require(try await queue.claim(consumer: "dead", block: .seconds(5)))
            // "dead" never renews. Another worker takes the job once the lease has run out.
            var second: ClaimedJob?
            let redelivered = try await eventually {
                second = try await queue.claim(consumer: "alive", block: .milliseconds(100))
                return second != nil
            }
            #expect(redelivered)
            #expect(second?.id == first.id)
            #expect(second?.attempt == 2)
            // The dead worker's late acknowledgement or renewal is refused; the new owner's works.
            #expect(try await queue.renew(first, consumer: "dead") == false)
            #expect(try await queue.acknowledge(first, consumer: "dead") == false)
            #expect(try await queue.acknowledge(try #require(second), consumer: "alive"))
            try await redis.send("DEL", queue.streamKey)
        }
    }

    @Test func renewedLeaseKeepsTheJob() async throws {
        try await TestServices.withRedis { redis in
            let queue = JobQueue(name: QueueName(TestServices.uniqueName("q")), client: redis, lease: .milliseconds(500))
            try await queue.prepare()
            try await queue.enqueue(id: JobID(), type: "chat", payload: "{}")
            let job = try #require(try await queue.claim(consumer: "a", block: .seconds(5)))
            // Keep renewing for well over two leases; the other worker never gets the job.
            let claimed = ContinuousClock.now
            while ContinuousClock.now - claimed < .milliseconds(1500) {
                #expect(try await queue.renew(job, consumer: "a"))
                #expect(try await queue.claim(consumer: "b", block: .milliseconds(150)) == nil)
            }
            #expect(try await queue.acknowledge(job, consumer: "a"))
            try await redis.send("DEL", queue.streamKey)
        }
    }

    @Test func jobEventsAreReadInOrderAndResumable() async throws {
        try await TestServices.withRedis { redis in
            let events = JobEvents(client: redis, retentionSeconds: 60)
            let job = JobID()
            let first = try await events.append(job, ["type": "token", "text": "a"])
            try await events.append(job, ["type": "token", "text": "b"])
            let all = try await events.all(job)
            #expect(all.map { $0.fields["text"] } == ["a", "b"])
            let rest = try await events.read(job, after: first, block: .seconds(1))
            #expect(rest.map { $0.fields["text"] } == ["b"])
            #expect(try await redis.send("TTL", events.key(job)).int ?? 0 > 0)
            try await redis.send("DEL", events.key(job))
        }
    }
}
