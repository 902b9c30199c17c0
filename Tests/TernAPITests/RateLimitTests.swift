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
                                    if response.status == .ok { admitted += 1 } else { refusal = response }
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
}
