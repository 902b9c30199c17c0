import Foundation
import Testing
import TernQueue
import TernRedis
import TernTestSupport

/// Following a job's events: what is there is read at once, later appends arrive through their
/// announcements, and quiet time is reported (for the heartbeats of event streams).
@Suite struct JobEventsTests {
    @Test func followReadsEarlierEventsThenAnnouncedOnesAndReportsQuietTime() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let events = JobEvents(queue: RedisJobQueue(name: QueueName(TestServices.uniqueName("events")), client: redis))
            let job = JobID()
            try await events.append(job, ["type": "token", "text": "a"])
            var texts: [String] = []
            var idle = 0
            var ids: [String] = []
            try await events.follow(job, after: "0", idle: .milliseconds(200)) { batch in
                texts += batch.map { $0.fields["text"] ?? $0.type }
                ids += batch.map(\.id)
                return batch.last?.type != "completed"
            } onIdle: {
                idle += 1
                if idle == 1 {
                    // Written while the reader waits: it hears of them, it does not poll for them.
                    Task {
                        try await events.append(job, ["type": "token", "text": "b"])
                        try await events.append(job, ["type": "completed"])
                    }
                }
                return idle < 1000
            }
            #expect(texts == ["a", "b", "completed"])
            #expect(idle >= 1)
            // Resuming after an event reads only what came after it.
            var resumed: [String] = []
            try await events.follow(job, after: ids[0], idle: .milliseconds(200)) { batch in
                resumed += batch.map(\.type)
                return batch.last?.type != "completed"
            } onIdle: { true }
            #expect(resumed == ["token", "completed"])
        }
    }

    @Test func announcedEventsAreTakenInOrderAndAGapIsReadFromTheStream() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let events = JobEvents(queue: RedisJobQueue(name: QueueName(TestServices.uniqueName("events")), client: redis))
            let job = JobID()
            let expected = (0..<200).map { "t\($0)" } + ["completed"]
            var texts: [String] = []
            var started = false
            try await events.follow(job, after: "0", idle: .milliseconds(200)) { batch in
                texts += batch.map { $0.fields["text"] ?? $0.type }
                return batch.last?.type != "completed"
            } onIdle: {
                if !started {
                    started = true
                    // Written while the reader waits. Event 100 is added without an
                    // announcement (as if it were lost): the next one no longer follows what
                    // the reader has, so it reads the stream.
                    Task {
                        for index in 0..<200 {
                            if index == 100 {
                                try await redis.send("XADD", events.key(job), "*", "type", "token", "text", "t100")
                            } else {
                                try await events.append(job, ["type": "token", "text": "t\(index)"])
                            }
                        }
                        try await events.append(job, ["type": "completed"])
                    }
                }
                return true
            }
            #expect(texts == expected)
        }
    }
}
