import NIOConcurrencyHelpers
import NIOCore
import Testing
import TernRedis
import TernTestSupport

/// Pub/sub against the real server.
@Suite struct RedisSubscriberTests {
    func subscriber(named name: String) throws -> RedisSubscriber {
        var configuration = try RedisConfiguration(url: TestServices.redisURL)
        configuration.clientName = name
        return RedisSubscriber(configuration: configuration)
    }

    @Test func deliversMessagesToEverySubscriberAndUnsubscribesWhenTheLastLeaves() async throws {
        try await TestServices.withRedis { client in
            let subscriber = try subscriber(named: TestServices.uniqueName("sub"))
            defer { subscriber.shutdown() }
            let channel = TestServices.uniqueName("channel")
            try await subscriber.subscribe(to: [channel]) { first in
                try await subscriber.subscribe(to: [channel]) { second in
                    let receivers = try await client.send("PUBLISH", channel, "hello")
                    #expect(receivers.int == 1)  // both subscriptions share one connection
                    var firstIterator = first.makeAsyncIterator()
                    var secondIterator = second.makeAsyncIterator()
                    #expect(await firstIterator.next()?.payload == ByteBuffer(string: "hello"))
                    #expect(await secondIterator.next()?.payload == ByteBuffer(string: "hello"))
                }
                // The second subscriber left; the first still listens.
                try await client.send("PUBLISH", channel, "still")
                var iterator = first.makeAsyncIterator()
                #expect(await iterator.next()?.payload == ByteBuffer(string: "still"))
            }
            let unsubscribed = try await eventually {
                try await client.send("PUBSUB", "NUMSUB", channel).array?.last?.int == 0
            }
            #expect(unsubscribed)
        }
    }

    @Test func aCallbackSubscriptionGetsEachMessageInOrderAndNothingOnceItsBodyEnded() async throws {
        try await TestServices.withRedis { client in
            let subscriber = try subscriber(named: TestServices.uniqueName("callback"))
            defer { subscriber.shutdown() }
            let channel = TestServices.uniqueName("channel")
            let received = NIOLockedValueBox<[String]>([])
            try await subscriber.subscribe(to: [channel], onMessage: { message in
                received.withLockedValue { $0.append(String(buffer: message.payload)) }
            }) {
                for index in 1...5 { try await client.publish("m\(index)", to: channel) }
                let all = try await eventually { received.withLockedValue { $0.count } == 5 }
                #expect(all)
            }
            // Left: another subscriber of the channel keeps it subscribed, and sees what follows;
            // the callback does not.
            try await subscriber.subscribe(to: [channel]) { messages in
                try await client.publish("after", to: channel)
                var iterator = messages.makeAsyncIterator()
                #expect(await iterator.next()?.payload == ByteBuffer(string: "after"))
            }
            #expect(received.withLockedValue { $0 } == ["m1", "m2", "m3", "m4", "m5"])
        }
    }

    @Test func patternSubscriptionsReceiveEveryMatchingChannel() async throws {
        try await TestServices.withRedis { client in
            let subscriber = try subscriber(named: TestServices.uniqueName("psub"))
            defer { subscriber.shutdown() }
            let prefix = TestServices.uniqueName("jobs")
            try await subscriber.subscribe(toPatterns: ["\(prefix):*"]) { messages in
                try await client.publish("one", to: "\(prefix):a")
                try await client.publish("ignored", to: "\(prefix)-other")
                try await client.publish("two", to: "\(prefix):b")
                var iterator = messages.makeAsyncIterator()
                let first = await iterator.next()
                let second = await iterator.next()
                #expect(first == RedisMessage(channel: "\(prefix):a", pattern: "\(prefix):*", payload: ByteBuffer(string: "one")))
                #expect(second?.channel == "\(prefix):b")
            }
            let unsubscribed = try await eventually { try await client.send("PUBSUB", "NUMPAT").int == 0 }
            #expect(unsubscribed)
        }
    }

    @Test func subscriptionsSurviveAReconnect() async throws {
        try await TestServices.withRedis { client in
            let name = TestServices.uniqueName("sub")
            let subscriber = try subscriber(named: name)
            defer { subscriber.shutdown() }
            let channel = TestServices.uniqueName("channel")
            try await subscriber.subscribe(toPatterns: ["\(channel):*"]) { patternMessages in
                try await subscriber.subscribe(to: [channel]) { messages in
                    // Cut the subscriber's connection from the server side.
                    let clients = try await client.send("CLIENT", "LIST").string ?? ""
                    let line = try #require(clients.split(separator: "\n").first { $0.contains("name=\(name)-subscriber") })
                    let id = try #require(line.split(separator: " ").first { $0.hasPrefix("id=") }?.dropFirst(3))
                    try await client.send("CLIENT", "KILL", "ID", String(id))
                    // Once resubscribed, a published message arrives again.
                    let resubscribed = try await eventually {
                        try await client.send("PUBLISH", channel, "after").int == 1
                    }
                    #expect(resubscribed)
                    var iterator = messages.makeAsyncIterator()
                    #expect(await iterator.next()?.payload == ByteBuffer(string: "after"))
                    // The pattern subscription came back too.
                    let patternBack = try await eventually {
                        try await client.publish("sub-channel", to: "\(channel):x") == 1
                    }
                    #expect(patternBack)
                    var patternIterator = patternMessages.makeAsyncIterator()
                    #expect(await patternIterator.next()?.pattern == "\(channel):*")
                }
            }
        }
    }
}

@Suite struct RedisSubscriberErrorTests {
    @Test func aRejectedSubscribeFailsTheSubscriberAlone() async throws {
        try await TestServices.withRedis { (client: RedisClient) async throws in
            let user = TestServices.uniqueName("nochannels")
            try await client.send("ACL", "SETUSER", user, "on", ">secret", "~*", "resetchannels", "+@all")
            var configuration = try RedisConfiguration(url: TestServices.redisURL)
            configuration.username = user
            configuration.password = "secret"
            let subscriber = RedisSubscriber(configuration: configuration)
            do {
                try await subscriber.subscribe(to: ["forbidden"]) { _ in Issue.record("should not be subscribed") }
                Issue.record("expected the server to refuse")
            } catch let error as RedisError {
                #expect(error.code == .server)
                #expect(error.message.hasPrefix("NOPERM"))
            }
            subscriber.shutdown()
            try await client.send("ACL", "DELUSER", user)
        }
    }
}
