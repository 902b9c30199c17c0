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

    /// A chat with `conversation` continues it: the job's prompt is the stored messages and the
    /// new one; the conversation shows its unfinished job, then the answer (marked if stopped).
    /// Another user cannot continue it, and learns nothing from trying.
    @Test func aChatContinuesItsConversationAndOnlyForItsOwner() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("thread") + "@test")
            let key = try await store.createAPIKey(for: user, name: "t").secret
            let other = try await store.createAPIKey(for: try await store.ensureUser(email: TestServices.uniqueName("other") + "@test"), name: "o").secret
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                let (api, queue, _) = testAPI(store, redis, configuration: configuration)
                let conversationHeader = HTTPField.Name("X-Tern-Conversation-Id")!
                try await Application(router: api.router()).test(.router) { client in
                    func chat(_ key: String, _ text: String, in conversation: String? = nil) async throws -> (status: HTTPResponse.Status, job: String, conversation: String) {
                        let scope = conversation.map { #","conversation":"\#($0)""# } ?? ""
                        let body = #"{"type":"chat.completion","input":{"model":"test-model","messages":[{"role":"user","content":"\#(text)"}]\#(scope)}}"#
                        return try await client.execute(
                            uri: "/v1/jobs", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"],
                            body: ByteBuffer(string: body)
                        ) { ($0.status, object($0)["id"] as? String ?? "", $0.headers[conversationHeader] ?? "") }
                    }
                    func thread(_ id: String) async throws -> [String: Any] {
                        try await client.execute(uri: "/v1/conversations/\(id)", method: .get, headers: [.authorization: "Bearer \(key)"]) { object($0) }
                    }
                    func contents(_ conversation: [String: Any]) -> [String] {
                        (conversation["messages"] as? [[String: Any]] ?? []).compactMap { $0["content"] as? String }
                    }
                    func claim() async throws -> (job: ClaimedJob, prompt: [ChatMessage]) {
                        let job = try #require(try await queue.claim(worker: "test", maximum: 1).jobs.first)
                        return (job, try JSONDecoder().decode(ChatJob.self, from: Data(job.payload.utf8)).messages)
                    }

                    let first = try await chat(key, "first")
                    #expect(first.status == .accepted)
                    #expect(try await thread(first.conversation)["pending_job"] as? String == first.job)
                    #expect(try await claim().prompt == [ChatMessage(role: "user", content: "first")])
                    try await store.completeChatJob(try #require(UUID(uuidString: first.job)), answer: "one", model: "test-model",
                                                    usage: TokenUsage(promptTokens: 1, completionTokens: 1))
                    var conversation = try await thread(first.conversation)
                    #expect(conversation["pending_job"] == nil)
                    #expect(contents(conversation) == ["first", "one"])

                    let second = try await chat(key, "second", in: first.conversation)
                    #expect(second.status == .accepted)
                    #expect(second.conversation == first.conversation)
                    let (running, prompt) = try await claim()
                    #expect(prompt == [
                        ChatMessage(role: "user", content: "first"), ChatMessage(role: "assistant", content: "one"), ChatMessage(role: "user", content: "second"),
                    ])
                    #expect(try await thread(first.conversation)["pending_job"] as? String == second.job)
                    // Ended in the queue while its row still says queued (its bookkeeping lost): not pending.
                    #expect(try await queue.complete(running, tokens: 1))
                    #expect(try await thread(first.conversation)["pending_job"] == nil)

                    // A stranger's chat in it is refused like a missing conversation, and adds nothing.
                    let intruder = try await chat(other, "let me in", in: first.conversation)
                    #expect(intruder.status == .notFound)
                    #expect(try await chat(key, "x", in: UUID().uuidString).status == .notFound)
                    #expect(try await chat(key, "x", in: "not-an-id").status == .badRequest)

                    try await store.stopChatJob(try #require(UUID(uuidString: second.job)), answer: "tw", model: "test-model",
                                                usage: TokenUsage(promptTokens: 1, completionTokens: 1))
                    conversation = try await thread(first.conversation)
                    #expect(contents(conversation) == ["first", "one", "second", "tw"])
                    let messages = conversation["messages"] as? [[String: Any]] ?? []
                    #expect(messages.map { $0["stopped"] as? Bool } == [nil, nil, nil, true])
                    #expect(conversation["pending_job"] == nil)
                }
            }
        }
    }

    /// A long conversation keeps its opening instructions and its newest messages within the
    /// request limits.
    @Test func aContinuedConversationKeepsItsSystemMessageAndItsNewestMessagesWithinTheLimits() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("long") + "@test")
            let key = try await store.createAPIKey(for: user, name: "l").secret
            let conversation = UUID()
            _ = try await store.createChat(
                user: user, jobID: UUID(), conversationID: conversation, model: "test-model", title: "long",
                messages: [StoredMessage(role: "system", content: "Be brief.")] + (1...6).map { StoredMessage(role: $0 % 2 == 1 ? "user" : "assistant", content: "m\($0)") })
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                var configuration = API.Configuration()
                configuration.models = ["test-model"]
                configuration.limits.maximumMessages = 4
                let (api, queue, _) = testAPI(store, redis, configuration: configuration)
                try await Application(router: api.router()).test(.router) { client in
                    let body = #"{"type":"chat.completion","input":{"model":"test-model","conversation":"\#(conversation.uuidString)","messages":[{"role":"user","content":"new"}]}}"#
                    try await client.execute(uri: "/v1/jobs", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"],
                                             body: ByteBuffer(string: body)) { #expect($0.status == .accepted) }
                    let job = try #require(try await queue.claim(worker: "test", maximum: 1).jobs.first)
                    let prompt = try JSONDecoder().decode(ChatJob.self, from: Data(job.payload.utf8)).messages
                    #expect(prompt.map(\.content) == ["Be brief.", "m5", "m6", "new"])
                }
            }
        }
    }
}
