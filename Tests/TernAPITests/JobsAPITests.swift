import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TernAI
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport

/// The jobs API against the real Redis and PostgreSQL; the test plays the worker.
@Suite struct JobsAPITests {
    struct Fixture {
        let api: API
        let owner: String
        let stranger: String
        let queue: RedisJobQueue
        let events: JobEvents
    }

    func withAPI(_ body: @Sendable (Fixture) async throws -> Void) async throws {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let owner = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("owner") + "@test"), name: "t").secret
                let stranger = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("other") + "@test"), name: "t").secret
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                configuration.heartbeatMilliseconds = 200
                let (api, queue, events) = testAPI(store, redis, configuration: configuration)
                try await body(Fixture(api: api, owner: owner, stranger: stranger, queue: queue, events: events))
            }
        }
    }

    func headers(_ key: String, _ extra: HTTPFields = [:]) -> HTTPFields {
        var headers = extra
        headers[.authorization] = "Bearer \(key)"
        headers[.contentType] = "application/json"
        return headers
    }

    static let createBody = #"{"type":"chat.completion","input":{"model":"test-model","messages":[{"role":"user","content":"Hi"}]}}"#

    @Test func aJobIsCreatedReadCancelledAndOnlyByItsOwner() async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                var id = ""
                try await client.execute(uri: "/v1/jobs", method: .post, headers: headers(fixture.owner), body: ByteBuffer(string: Self.createBody)) { response in
                    #expect(response.status == .accepted)
                    id = object(response)["id"] as? String ?? ""
                    #expect(response.headers[.location] == "/v1/jobs/\(id)")
                    #expect(object(response)["status"] as? String == "queued")
                }
                // Another user sees nothing: the same 404 as for a job that does not exist.
                for (method, path) in [(HTTPRequest.Method.get, "/v1/jobs/\(id)"), (.get, "/v1/jobs/\(id)/events"), (.post, "/v1/jobs/\(id)/cancel"),
                                       (.get, "/v1/jobs/\(JobID())"), (.get, "/v1/jobs/not-a-uuid")] {
                    let key = path.contains(id) ? fixture.stranger : fixture.owner
                    try await client.execute(uri: path, method: method, headers: headers(key)) { response in
                        #expect(response.status == .notFound, "\(method) \(path)")
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "job_not_found")
                    }
                }
                #expect(try await fixture.queue.status(try #require(JobID(id)))?.state == .ready)  // the stranger's cancel did nothing
                try await client.execute(uri: "/v1/jobs/\(id)", method: .get, headers: headers(fixture.owner)) { response in
                    #expect(response.status == .ok)
                    #expect(object(response)["type"] as? String == "chat.completion")
                }
                try await client.execute(uri: "/v1/jobs/\(id)/cancel", method: .post, headers: headers(fixture.owner)) { response in
                    #expect(response.status == .ok)
                    #expect(object(response)["status"] as? String == "cancelled")
                }
                try await client.execute(uri: "/v1/jobs/\(id)/events", method: .get, headers: headers(fixture.owner)) { response in
                    let text = String(buffer: response.body)
                    #expect(text.contains("event: queued") && text.contains("event: cancelled"))
                }
            }
        }
    }

    @Test func pastTheAdmissionBacklogGenerationsAreRefusedAtOnceAndOthersGoOn() async throws {
        try await TestServices.withStore { store in
            let key = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("busy") + "@test"), name: "b").secret
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                configuration.admissionBacklog = 2
                let (api, queue, _) = testAPI(store, redis, configuration: configuration)
                for _ in 0..<2 { _ = try await queue.enqueue(NewJob(type: "chat", tenant: "someone", payload: "{}")) }
                try await Application(router: api.router()).test(.router) { client in
                    try await client.execute(uri: "/v1/jobs", method: .post, headers: headers(key), body: ByteBuffer(string: Self.createBody)) { response in
                        #expect(response.status == .serviceUnavailable)
                        #expect(response.headers[.retryAfter] == "5")
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "queue_full")
                    }
                    try await client.execute(uri: "/v1/models", method: .get, headers: headers(key)) { #expect($0.status == .ok) }
                }
                #expect(try await queue.backlog() == 2)  // nothing was added
            }
        }
    }

    @Test func eventsResumeAfterTheLastEventID() async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                var id = JobID()
                try await client.execute(uri: "/v1/jobs", method: .post, headers: headers(fixture.owner), body: ByteBuffer(string: Self.createBody)) { response in
                    id = JobID(object(response)["id"] as? String ?? "") ?? id
                }
                // The worker's part: claim, stream three tokens, finish.
                let job = try #require(try await fixture.queue.claim(worker: "test", maximum: 1).jobs.first)
                var ids: [String] = []
                for piece in ["A", "B", "C"] { ids.append(try await fixture.events.append(id, ChatEvent.token(piece).fields)) }
                try await fixture.events.append(id, ChatEvent.done(finishReason: "stop", promptTokens: 1, completionTokens: 3).fields)
                #expect(try await fixture.queue.complete(job, tokens: 4))
                try await client.execute(uri: "/v1/jobs/\(id)/events", method: .get, headers: headers(fixture.owner, [.init("Last-Event-ID")!: ids[0]])) { response in
                    let text = String(buffer: response.body)
                    #expect(!text.contains(#""text":"A""#))
                    #expect(text.contains("id: \(ids[1])\nevent: token\ndata: {\"text\":\"B\"}"))
                    #expect(text.contains(#""text":"C""#) && text.contains("event: done") && text.hasSuffix("event: completed\ndata: {}\n\n"))
                }
                try await client.execute(uri: "/v1/jobs/\(id)/events", method: .get, headers: headers(fixture.owner, [.init("Last-Event-ID")!: "nonsense"])) { response in
                    #expect(response.status == .badRequest)
                }
            }
        }
    }
}
