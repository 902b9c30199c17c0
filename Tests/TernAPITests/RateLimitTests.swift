import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport

/// A key's rate limit holds across API instances: they share nothing but Redis.
@Suite struct RateLimitTests {
    @Test func aKeyHammeredThroughTwoInstancesGetsAtMostItsLimit() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("limited") + "@test")
            let key = try await store.createAPIKey(for: user, name: "limited").secret
            var configuration = API.Configuration()
            configuration.requestsPerMinutePerKey = 60
            configuration.requestsPerMinutePerUser = nil
            configuration.rateLimitBurst = 5
            // Two instances, each with its own Redis connections.
            try await TestServices.withRedis { (first: RedisClient) async throws in
                try await TestServices.withRedis { (second: RedisClient) async throws in
                    let apis = [first, second].map { testAPI(store, $0, configuration: configuration).api }
                    try await Application(router: apis[0].router()).test(.router) { one in
                        try await Application(router: apis[1].router()).test(.router) { two in
                            let start = ContinuousClock.now
                            var admitted = 0
                            var refusal: TestResponse?
                            for index in 0..<60 {
                                let client = index % 2 == 0 ? one : two
                                try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer \(key)"]) { response in
                                    if response.status == .ok {
                                        admitted += 1
                                        #expect(response.headers[HTTPField.Name("RateLimit-Limit")!] == "60")
                                        #expect(Int(response.headers[HTTPField.Name("RateLimit-Remaining")!] ?? "") ?? -1 < 5)
                                        #expect(Int(response.headers[HTTPField.Name("RateLimit-Reset")!] ?? "") ?? 0 >= 1)
                                    } else {
                                        refusal = response
                                    }
                                }
                            }
                            let elapsed = ContinuousClock.now - start
                            // 60 a minute is one a second, after a burst of 5.
                            let allowed = 5 + Int(elapsed.components.seconds) + 1
                            #expect(admitted >= 5)
                            #expect(admitted <= allowed, "admitted \(admitted) in \(elapsed)")
                            let refused = try #require(refusal)
                            #expect(refused.status == .tooManyRequests)
                            #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 >= 1)
                            #expect(refused.headers[HTTPField.Name("RateLimit-Limit")!] == "60")
                            let body = try JSONSerialization.jsonObject(with: Data(refused.body.readableBytesView)) as? [String: Any]
                            #expect((body?["error"] as? [String: Any])?["code"] as? String == "rate_limit_exceeded")
                        }
                    }
                }
            }
        }
    }

    @Test func aBadGenerationRequestStillCountsAgainstTheLimit() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("limited") + "@test")
            let key = try await store.createAPIKey(for: user, name: "limited").secret
            var configuration = API.Configuration()
            configuration.requestsPerMinutePerKey = 1
            configuration.requestsPerMinutePerUser = nil
            configuration.rateLimitBurst = 2
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                try await Application(router: testAPI(store, redis, configuration: configuration).api.router()).test(.router) { client in
                    var statuses: [HTTPResponse.Status] = []
                    for uri in ["/v1/chat/completions", "/v1/embeddings", "/v1/jobs"] {
                        try await client.execute(
                            uri: uri, method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"],
                            body: ByteBuffer(string: "{}")
                        ) { statuses.append($0.status) }
                    }
                    #expect(statuses == [.badRequest, .badRequest, .tooManyRequests])
                }
            }
        }
    }

    @Test func aKeysTokensAMinuteAreReservedAcrossInstances() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("tokens") + "@test")
            let key = try await store.createAPIKey(for: user, name: "tokens").secret
            var configuration = API.Configuration()
            configuration.tokensPerMinutePerKey = 1000
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let apis = (0..<2).map { _ in testAPI(store, redis, configuration: configuration).api }
                let job = ByteBuffer(string: #"{"type":"chat.completion","input":{"model":"smollm2-135m","max_tokens":400,"messages":[{"role":"user","content":"Hi"}]}}"#)
                let headers: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/json"]
                try await Application(router: apis[0].router()).test(.router) { one in
                    try await Application(router: apis[1].router()).test(.router) { two in
                        // Two jobs of about 400 tokens fit in 1000 a minute; the third does not.
                        try await one.execute(uri: "/v1/jobs", method: .post, headers: headers, body: job) { #expect($0.status == .accepted) }
                        try await two.execute(uri: "/v1/jobs", method: .post, headers: headers, body: job) { #expect($0.status == .accepted) }
                        try await one.execute(uri: "/v1/jobs", method: .post, headers: headers, body: job) { response in
                            #expect(response.status == .tooManyRequests)
                            #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
                            #expect(response.headers[HTTPField.Name("RateLimit-Limit")!] == "1000")
                            let error = object(response)["error"] as? [String: Any]
                            #expect(error?["code"] as? String == "tokens_rate_limit_exceeded")
                            #expect(error?["type"] as? String == "tokens")
                        }
                        // A refused request reserved nothing: a small one still fits.
                        let small = ByteBuffer(string: #"{"type":"chat.completion","input":{"model":"smollm2-135m","max_tokens":100,"messages":[{"role":"user","content":"Hi"}]}}"#)
                        try await two.execute(uri: "/v1/jobs", method: .post, headers: headers, body: small) { #expect($0.status == .accepted) }
                    }
                }
            }
        }
    }
}
