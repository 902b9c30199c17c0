import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TernAPI
import TernRedis
import TernStore
import TernTestSupport

/// Redis or PostgreSQL away: a request that needs it gets a quick 503 with a stable code and
/// `Retry-After`, not a 500 and not a wait without end. Port 1 (tcpmux) stands for the server
/// that is away: nothing listens there, so every connection is refused.
@Suite struct UnavailableServicesTests {
    static func expectUnavailable(_ response: TestResponse, code: String) {
        #expect(response.status == .serviceUnavailable)
        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == code)
        #expect(response.headers[.retryAfter] != nil)
    }

    static let chat = ByteBuffer(string: #"{"model":"test-model","messages":[{"role":"user","content":"Hi"}]}"#)

    @Test func redisAwayIsA503() async throws {
        try await TestServices.withStore { store in
            let key = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("away") + "@test"), name: "t").secret
            try await TestServices.withRedis(url: "redis://127.0.0.1:1") { redis in
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                let (api, _, _) = testAPI(store, redis, configuration: configuration)
                try await Application(router: api.router()).test(.router) { client in
                    let headers: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/json"]
                    try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: Self.chat) { response in
                        Self.expectUnavailable(response, code: "redis_unavailable")
                    }
                    try await client.execute(uri: "/v1/conversations", method: .get, headers: headers) { response in
                        Self.expectUnavailable(response, code: "redis_unavailable")
                    }
                }
            }
        }
    }

    @Test func postgresAwayIsA503WithinTheStoresDeadline() async throws {
        try await TestServices.withStoreAway(deadline: .milliseconds(500)) { store in
            try await TestServices.withRedis { redis in
                let (api, _, _) = testAPI(store, redis)
                try await Application(router: api.router()).test(.router) { client in
                    // The key is looked up in PostgreSQL.
                    let headers: HTTPFields = [.authorization: "Bearer tern_\(String(repeating: "0", count: 64))"]
                    let started = ContinuousClock.now
                    try await client.execute(uri: "/v1/conversations", method: .get, headers: headers) { response in
                        Self.expectUnavailable(response, code: "database_unavailable")
                    }
                    #expect(ContinuousClock.now - started < .seconds(10))
                    try await client.execute(uri: "/healthz", method: .get) { response in
                        #expect(response.status == .serviceUnavailable)
                    }
                }
            }
        }
    }
}
