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

/// API keys: created (the secret shown once), listed, revoked; a key revoked through one
/// instance is refused by another on its next request, with rate limits and without them
/// (then the revocation is checked alone).
@Suite struct KeysAPITests {
    @Test(arguments: [true, false])
    func aKeyRevokedThroughOneInstanceIsRefusedByAnother(limited: Bool) async throws {
        var unlimited = API.Configuration()
        unlimited.requestsPerMinutePerKey = nil
        unlimited.requestsPerMinutePerUser = nil
        let configuration = limited ? API.Configuration() : unlimited
        try await TestServices.withStore { store in
            let owner = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("keys") + "@test"), name: "first").secret
            let stranger = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("other") + "@test"), name: "x").secret
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let apis = (0..<2).map { _ in testAPI(store, redis, configuration: configuration).api }
                try await Application(router: apis[0].router()).test(.router) { one in
                    try await Application(router: apis[1].router()).test(.router) { two in
                        var id = "", secret = ""
                        try await one.execute(uri: "/v1/keys", method: .post, headers: [.authorization: "Bearer \(owner)", .contentType: "application/json"],
                                              body: ByteBuffer(string: #"{"name":"ci"}"#)) { response in
                            #expect(response.status == .created)
                            id = object(response)["id"] as? String ?? ""
                            secret = object(response)["key"] as? String ?? ""
                        }
                        #expect(secret.hasPrefix("tern_"))
                        try await two.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer \(secret)"]) { #expect($0.status == .ok) }
                        try await two.execute(uri: "/v1/keys", method: .get, headers: [.authorization: "Bearer \(secret)"]) { response in
                            let keys = object(response)["data"] as? [[String: Any]] ?? []
                            #expect(keys.map { $0["name"] as? String } == ["ci", "first"])
                            #expect(keys.allSatisfy { $0["key"] == nil })  // the secret is never shown again
                        }
                        let search = #"{"query":"x","mode":"vector","embedding":["# + Array(repeating: "0.5", count: Store.embeddingDimensions).joined(separator: ",") + "]}"
                        try await two.execute(uri: "/v1/search", method: .post, headers: [.authorization: "Bearer \(secret)", .contentType: "application/json"],
                                              body: ByteBuffer(string: search)) { #expect($0.status == .ok) }
                        // Another user cannot revoke it.
                        try await one.execute(uri: "/v1/keys/\(id)", method: .delete, headers: [.authorization: "Bearer \(stranger)"]) {
                            #expect($0.status == .notFound)
                        }
                        try await one.execute(uri: "/v1/keys/\(id)", method: .delete, headers: [.authorization: "Bearer \(owner)"]) { response in
                            #expect(response.status == .ok)
                            #expect(object(response)["revoked_at"] is Int)
                        }
                        // The other instance refuses the revoked key: its search finds nothing.
                        try await two.execute(uri: "/v1/search", method: .post, headers: [.authorization: "Bearer \(secret)", .contentType: "application/json"],
                                              body: ByteBuffer(string: search)) { response in
                            #expect(response.status == .unauthorized)
                            #expect(object(response)["data"] == nil)
                        }
                        try await two.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer \(secret)"]) {
                            #expect($0.status == .unauthorized)
                        }
                    }
                }
            }
        }
    }
}
