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

@Suite struct ConversationsAPITests {
    @Test func conversationsAreCreatedPagedReadRenamedAndDeletedByTheirOwnerOnly() async throws {
        try await TestServices.withStore { store in
            let key = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("conv") + "@test"), name: "c").secret
            let other = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("other") + "@test"), name: "o").secret
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let api = testAPI(store, redis).api
                try await Application(router: api.router()).test(.router) { client in
                    let owner: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/json"]
                    var ids: [String] = []
                    for title in ["one", "two", "three"] {
                        try await client.execute(uri: "/v1/conversations", method: .post, headers: owner, body: ByteBuffer(string: #"{"title":"\#(title)"}"#)) {
                            #expect($0.status == .created)
                            ids.append(object($0)["id"] as? String ?? "")
                        }
                    }
                    // Pages of two, newest first.
                    var seen: [String] = []
                    var after: String?
                    repeat {
                        let uri = "/v1/conversations?limit=2" + (after.map { "&after=\($0)" } ?? "")
                        try await client.execute(uri: uri, method: .get, headers: owner) { response in
                            let page = object(response)
                            seen += (page["data"] as? [[String: Any]] ?? []).compactMap { $0["title"] as? String }
                            after = page["has_more"] as? Bool == true ? page["last_id"] as? String : nil
                        }
                    } while after != nil
                    #expect(seen == ["three", "two", "one"])
                    try await client.execute(uri: "/v1/conversations/\(ids[0])", method: .patch, headers: owner, body: ByteBuffer(string: #"{"title":"renamed"}"#)) {
                        #expect(object($0)["title"] as? String == "renamed")
                    }
                    try await client.execute(uri: "/v1/conversations/\(ids[0])", method: .get, headers: owner) { response in
                        #expect(object(response)["title"] as? String == "renamed")
                        #expect((object(response)["messages"] as? [Any])?.isEmpty == true)
                    }
                    let stranger: HTTPFields = [.authorization: "Bearer \(other)", .contentType: "application/json"]
                    for method in [HTTPRequest.Method.get, .delete] {
                        try await client.execute(uri: "/v1/conversations/\(ids[1])", method: method, headers: stranger) { #expect($0.status == .notFound) }
                    }
                    try await client.execute(uri: "/v1/conversations/\(ids[1])", method: .patch, headers: stranger, body: ByteBuffer(string: #"{"title":"x"}"#)) {
                        #expect($0.status == .notFound)
                    }
                    try await client.execute(uri: "/v1/conversations", method: .get, headers: stranger) {
                        #expect((object($0)["data"] as? [Any])?.isEmpty == true)
                    }
                    try await client.execute(uri: "/v1/conversations/\(ids[1])", method: .delete, headers: owner) { #expect($0.status == .noContent) }
                    try await client.execute(uri: "/v1/conversations/\(ids[1])", method: .get, headers: owner) { #expect($0.status == .notFound) }
                }
            }
        }
    }
}
