import NIOCore
import Testing
import TernRedis
import TernTestSupport
@testable import TernQueue

/// What an appended event's announcement carries, as the append script writes it and readers
/// take it: the id of the event before, the event's id and its fields, byte for byte.
@Suite struct AnnouncementTests {
    @Test func anAnnouncementCarriesTheEventAndTheIdBeforeIt() async throws {
        try await TestServices.withRedis { (redis: RedisClient) async throws in
            let events = JobEvents(queue: RedisJobQueue(name: QueueName(TestServices.uniqueName("announce")), client: redis))
            let job = JobID()
            let first = try await events.append(job, ["type": "queued"])
            let text = "12:34 ünïcödé 🚀, \"quoted\"\n\\ and : colons"
            let subscriber = RedisSubscriber(configuration: redis.configuration)
            defer { subscriber.shutdown() }
            let payload = try await subscriber.subscribe(to: [events.key(job)]) { messages in
                let id = try await events.append(job, ["type": "token", "text": text, "empty": ""])
                var iterator = messages.makeAsyncIterator()
                let payload = await iterator.next()?.payload
                return (id, payload)
            }
            let announced = try #require(payload.1.flatMap(JobEvents.announcedEvent))
            #expect(announced.previous == first)
            #expect(announced.event.id == payload.0)
            #expect(announced.event.fields == ["type": "token", "text": text, "empty": ""])
        }
    }

    @Test func onlyWholeLengthPrefixedPartsAreRead() {
        func parts(_ text: String) -> [String]? { JobEvents.lengthPrefixedStrings(ByteBuffer(string: text)) }
        #expect(parts("3:abc0:2:de") == ["abc", "", "de"])
        #expect(parts("") == [])
        #expect(parts("1") == nil)  // an announcement without its event
        #expect(parts("4:abc") == nil)  // cut short
        #expect(parts("3:abcd") == nil)  // a byte too many
        #expect(parts(":abc") == nil)
        #expect(parts("x:1") == nil)
        #expect(parts("9999999999:a") == nil)  // no length that long
        #expect(JobEvents.announcedEvent(ByteBuffer(string: "1:01:11:a")) == nil)  // a field without its value
        #expect(JobEvents.announcedEvent(ByteBuffer(string: "1:01:14:type5:token"))?.event.fields == ["type": "token"])
    }
}
