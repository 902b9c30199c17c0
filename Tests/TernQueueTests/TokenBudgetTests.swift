import Foundation
import Testing
import TernQueue
import TernRedis
import TernTestSupport

/// Tokens a minute: reserved in every bucket or none, settled with the real count once.
@Suite struct TokenBudgetTests {
    @Test func reservesInAllBucketsOrNoneAndSettlesOnce() async throws {
        try await TestServices.withRedis { redis in
            let budget = TokenBudget(redis: redis)
            let name = TestServices.uniqueName("tokens")
            let key = TokenBudget.Bucket(key: "\(name):{u}:key", perMinute: 1000)
            let user = TokenBudget.Bucket(key: "\(name):{u}:user", perMinute: 1500)
            try await budget.reserve(600, in: [key, user])
            // The key's bucket has 400 left: refused, and the user's bucket is not charged.
            let refusal = try await #require(throws: RateLimitRefusal.self) { try await budget.reserve(600, in: [key, user]) }
            #expect(refusal.limit == 1000)
            #expect(refusal.retryAfter > .seconds(5) && refusal.retryAfter <= .seconds(13))
            try await budget.reserve(800, in: [user])  // 600 + 800 of the user's 1500
            await #expect(throws: RateLimitRefusal.self) { try await budget.reserve(200, in: [user]) }
            // The first request used 100 tokens, not 600: 500 come back to both buckets, once.
            try await budget.settle(reserved: 600, used: 100, in: [key, user], once: "job-1")
            try await budget.settle(reserved: 600, used: 100, in: [key, user], once: "job-1")
            try await budget.reserve(500, in: [key, user])
            await #expect(throws: RateLimitRefusal.self) { try await budget.reserve(200, in: [key, user]) }
        }
    }

    @Test func aRequestLargerThanTheBucketWaitsForAFullOne() async throws {
        try await TestServices.withRedis { redis in
            let budget = TokenBudget(redis: redis)
            let bucket = TokenBudget.Bucket(key: "\(TestServices.uniqueName("tokens")):{u}:key", perMinute: 100)
            try await budget.reserve(5000, in: [bucket])
            // The bucket refills 100 a minute: 50 come back only after 30 s, far more than these steps take.
            await #expect(throws: RateLimitRefusal.self) { try await budget.reserve(50, in: [bucket]) }
            // It was charged the bucket's 100, not 5000: using 150 gives nothing back.
            try await budget.settle(reserved: 5000, used: 150, in: [bucket])
            await #expect(throws: RateLimitRefusal.self) { try await budget.reserve(50, in: [bucket]) }
        }
    }
}
