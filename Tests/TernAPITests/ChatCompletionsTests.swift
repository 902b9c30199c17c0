import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import TernAI
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport

/// The API against the real Redis and PostgreSQL; a test plays the worker by writing job events.
@Suite struct ChatCompletionsTests {
    struct Fixture {
        let api: API
        let key: String
        let queue: RedisJobQueue
        let events: JobEvents
    }

    func withAPI(_ body: @Sendable (Fixture) async throws -> Void) async throws {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { redis in
                let user = try await store.ensureUser(email: TestServices.uniqueName("api") + "@test")
                let key = try await store.createAPIKey(for: user, name: "test").secret
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                configuration.limits.maximumBodyBytes = 4096
                configuration.metricsToken = "metrics-secret"
                let (api, queue, events) = testAPI(store, redis, configuration: configuration)
                try await body(Fixture(api: api, key: key, queue: queue, events: events))
            }
        }
    }

    func request(_ key: String?, _ body: String) -> (HTTPFields, ByteBuffer) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let key { headers[.authorization] = "Bearer \(key)" }
        return (headers, ByteBuffer(string: body))
    }

    func errorCode(_ response: TestResponse) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    @Test func refusesBodiesNotDeclaredJSONAndNULs() async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                let body = #"{"model":"test-model","messages":[{"role":"user","content":"Hi"}]}"#
                // A cross-site form can send text/plain without asking; it is refused before anything runs.
                var (headers, buffer) = request(fixture.key, body)
                headers[.contentType] = "text/plain"
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: buffer) { response in
                    #expect(response.status == .unsupportedMediaType)
                    #expect(errorCode(response) == "unsupported_media_type")
                }
                // NUL, escaped or as UTF-16, never reaches PostgreSQL.
                (headers, buffer) = request(fixture.key, #"{"model":"test-model","messages":[{"role":"user","content":"a\u0000b"}]}"#)
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: buffer) { #expect($0.status == .badRequest) }
                let utf16 = ByteBuffer(bytes: Array(body.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: utf16) { #expect($0.status == .badRequest) }
            }
        }
    }

    @Test func healthAndAuthentication() async throws {
        try await withAPI { fixture in
            let app = Application(router: fixture.api.router())
            try await app.test(.router) { client in
                try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
                let (headers, body) = request("tern_wrong", #"{"model":"test-model","messages":[{"role":"user","content":"x"}]}"#)
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .unauthorized)
                    #expect(errorCode(response) == "invalid_api_key")
                }
                try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .unauthorized) }
            }
        }
    }

    @Test(arguments: [
        (#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#, HTTPResponse.Status.notFound, "model_not_found"),
        (#"{"model":"test-model","messages":[]}"#, .badRequest, "invalid_request"),
        (#"{"model":"test-model","messages":[{"role":"wizard","content":"x"}]}"#, .badRequest, "invalid_request"),
        (#"{"model":"test-model","messages":[{"role":"user","content":"x"}],"temperature":9}"#, .badRequest, "invalid_request"),
        (#"{"model":"test-model","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, .badRequest, "invalid_request"),
        (#"{"model":"test-model""#, .badRequest, "invalid_request"),
        ("[1,2,3]", .badRequest, "invalid_request"),
    ])
    func rejectsBadRequestsWithOpenAIErrors(body: String, status: HTTPResponse.Status, code: String) async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                let (headers, buffer) = request(fixture.key, body)
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: buffer) { response in
                    #expect(response.status == status)
                    #expect(errorCode(response) == code)
                }
            }
            #expect(try await fixture.queue.stats().totals["enqueued"] == nil)  // nothing was enqueued
        }
    }

    @Test func metricsNeedTheirToken() async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .unauthorized) }
                try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer wrong"]) {
                    #expect($0.status == .unauthorized)
                }
                try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer metrics-secret"]) { response in
                    #expect(response.status == .ok)
                    #expect(String(buffer: response.body).contains("tern_queue_jobs{queue=\"\(fixture.queue.name)\",state=\"ready\"} 0"))
                }
            }
        }
    }

    @Test func rejectsABodyOverTheLimit() async throws {
        try await withAPI { fixture in
            try await Application(router: fixture.api.router()).test(.router) { client in
                let (headers, buffer) = request(fixture.key, String(repeating: " ", count: 5000) + "{}")
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: buffer) { response in
                    #expect(response.status == .contentTooLarge)
                    #expect(errorCode(response) == "body_too_large")
                }
            }
        }
    }

    @Test func streamsTheJobsEventsAsOpenAIChunks() async throws {
        try await withAPI { fixture in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // The worker's part: claim the job, write its events.
                    var claimed: ClaimedJob?
                    claimed = try await fixture.queue.claim(worker: "test", maximum: 1).jobs.first
                    while claimed == nil {
                        claimed = try await fixture.queue.claimAfterWake(worker: "test", maximum: 1, batch: false, timeout: .seconds(1)).jobs.first
                    }
                    let job = try #require(claimed)
                    let chat = try JSONDecoder().decode(ChatJob.self, from: Data(job.payload.utf8))
                    #expect(chat.messages == [ChatMessage(role: "user", content: "Hi")])
                    #expect(chat.options.maxTokens == 5)
                    for event in [ChatEvent.started(attempt: 1), .token("Hel"), .token("lo"), .done(finishReason: "stop", promptTokens: 1, completionTokens: 2)] {
                        try await fixture.events.append(job.id, event.fields)
                    }
                    #expect(try await fixture.queue.complete(job, tokens: 3))
                }
                try await Application(router: fixture.api.router()).test(.live) { client in
                    let (headers, body) = request(fixture.key, #"{"model":"test-model","stream":true,"max_tokens":5,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#)
                    try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: body) { response in
                        #expect(response.status == .ok)
                        #expect(response.headers[.contentType] == "text/event-stream")
                        #expect(response.headers[HTTPField.Name("X-Tern-Job-Id")!] != nil)
                        let text = String(buffer: response.body)
                        let payloads = text.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
                        #expect(payloads.last == "[DONE]")
                        let chunks = payloads.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                        let content = chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }.joined()
                        #expect(content == "Hello")
                        #expect((chunks.last?["usage"] as? [String: Any])?["total_tokens"] as? Int == 3)
                    }
                }
                try await group.waitForAll()
            }
        }
    }
}
