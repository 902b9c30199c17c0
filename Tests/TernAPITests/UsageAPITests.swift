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

@Suite struct UsageAPITests {
    @Test func usageIsPerDayAndModelAndOnlyTheCallers() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("usage") + "@test")
            let created = try await store.createAPIKey(for: user, name: "u")
            let key = created.secret
            let second = try await store.createAPIKey(for: user, name: "second")
            let other = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("other") + "@test"), name: "o").secret
            // The second key made the "b" request.
            for (model, prompt, completion) in [("a", 10, 5), ("a", 1, 2), ("b", 7, 7)] {
                let job = UUID()
                _ = try await store.createChat(
                    user: user, apiKey: model == "b" ? second.id : created.id, jobID: job, model: model, title: "t",
                    messages: [StoredMessage(role: "user", content: "hi")])
                try await store.completeChatJob(job, answer: "ok", model: model, usage: TokenUsage(promptTokens: prompt, completionTokens: completion))
            }
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let api = testAPI(store, redis).api
                try await Application(router: api.router()).test(.router) { client in
                    try await client.execute(uri: "/v1/usage", method: .get, headers: [.authorization: "Bearer \(key)"]) { response in
                        #expect(response.status == .ok)
                        let rows = (try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])?["data"] as? [[String: Any]] ?? []
                        #expect(rows.map { $0["model"] as? String } == ["a", "b"])
                        #expect(rows.map { $0["requests"] as? Int } == [2, 1])
                        #expect(rows.map { $0["prompt_tokens"] as? Int } == [11, 7])
                        #expect(rows.map { $0["completion_tokens"] as? Int } == [7, 7])
                    }
                    try await client.execute(uri: "/v1/usage", method: .get, headers: [.authorization: "Bearer \(other)"]) { response in
                        #expect(String(buffer: response.body).contains(#""data":[]"#))
                    }
                    try await client.execute(uri: "/v1/usage?days=0", method: .get, headers: [.authorization: "Bearer \(key)"]) {
                        #expect($0.status == .badRequest)
                    }
                    // By key: only that key's requests.
                    try await client.execute(uri: "/v1/usage?api_key=\(second.id)", method: .get, headers: [.authorization: "Bearer \(key)"]) { response in
                        let rows = (try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])?["data"] as? [[String: Any]] ?? []
                        #expect(rows.map { $0["model"] as? String } == ["b"])
                    }
                    try await client.execute(uri: "/v1/usage?api_key=nope", method: .get, headers: [.authorization: "Bearer \(key)"]) {
                        #expect($0.status == .badRequest)
                    }
                }
            }
        }
    }
}
