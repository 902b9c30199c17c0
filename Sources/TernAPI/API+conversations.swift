import Foundation
import Hummingbird
import TernAI
import TernQueue
import TernStore

struct ConversationObject: Encodable {
    struct Message: Encodable {
        let role: String
        let content: String
        /// An answer's sources, if it was given from documents.
        var citations: [Citation]?
        /// `true` for an answer stopped before it was complete.
        var stopped: Bool?
    }

    let id: String
    var object = "conversation"
    let title: String
    let created_at: Int
    let updated_at: Int
    var messages: [Message]?
    /// The conversation's answer still being written, if any: its job, whose events
    /// (`GET /v1/jobs/{id}/events`) give the answer so far and the rest as it comes.
    var pending_job: String?

    init(_ summary: ConversationSummary, messages: [StoredMessage]? = nil, pendingJob: UUID? = nil) {
        id = summary.id.uuidString.lowercased()
        title = summary.title
        created_at = Int(summary.createdAt.timeIntervalSince1970)
        updated_at = Int(summary.updatedAt.timeIntervalSince1970)
        self.messages = messages?.map {
            Message(role: $0.role, content: $0.content, citations: $0.citations.flatMap(Citation.decode), stopped: $0.stopped ? true : nil)
        }
        pending_job = pendingJob?.uuidString.lowercased()
    }
}

struct ConversationPage: Encodable {
    var object = "list"
    let data: [ConversationObject]
    let has_more: Bool
    let last_id: String?
}

struct ConversationTitle: JSONBody {
    let title: String

    init(json: JSONObject) throws {
        title = try json.string("title")
    }
}

extension API {
    /// Conversations: create, list (paginated: `limit`, `after`), read with messages, rename,
    /// delete. Only the owner's; another user's is a 404.
    func addConversationRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/conversations") { request, _ in
            let user = try await authenticate(request).user
            let title = try validTitle(try await decodeBody(ConversationTitle.self, of: request, what: "conversation"))
            return try json(ConversationObject(try await store.createConversation(for: user, title: title)), status: .created)
        }
        router.get("/v1/conversations") { request, _ in
            let user = try await authenticate(request).user
            let (limit, after) = try pageParameters(of: request, listing: "conversation")
            let page = try await store.conversations(of: user, limit: limit + 1, after: after)
            let shown = page.prefix(limit).map { ConversationObject($0) }
            return try json(ConversationPage(data: Array(shown), has_more: page.count > limit, last_id: shown.last?.id))
        }
        router.get("/v1/conversations/:id") { request, context in
            let user = try await authenticate(request).user
            let id = try conversationID(context)
            async let thread = store.thread(conversation: id, user: user)
            guard let summary = try await store.conversation(id, of: user) else { throw APIError.conversationNotFound }
            var (messages, pendingJob) = try await thread
            // A job can end in the queue without its row being finished (given up after its
            // last attempt, or its bookkeeping lost): only a job the queue still runs is pending.
            if let job = pendingJob.map(JobID.init), try await ![.ready, .delayed, .active].contains(queue.status(job)?.state) {
                pendingJob = nil
            }
            return try json(ConversationObject(summary, messages: messages, pendingJob: pendingJob))
        }
        router.patch("/v1/conversations/:id") { request, context in
            let user = try await authenticate(request).user
            let id = try conversationID(context)
            let title = try validTitle(try await decodeBody(ConversationTitle.self, of: request, what: "conversation"))
            guard try await store.renameConversation(id, of: user, to: title), let summary = try await store.conversation(id, of: user)
            else { throw APIError.conversationNotFound }
            return try json(ConversationObject(summary))
        }
        router.delete("/v1/conversations/:id") { request, context in
            let user = try await authenticate(request).user
            guard try await store.deleteConversation(try conversationID(context), of: user) else { throw APIError.conversationNotFound }
            return Response(status: .noContent)
        }
    }

    private func conversationID(_ context: BasicRequestContext) throws -> UUID {
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw APIError.conversationNotFound }
        return id
    }

    private func validTitle(_ body: ConversationTitle) throws -> String {
        let title = body.title.trimmingCharacters(in: .whitespacesAndNewlines)
        guard title.count <= 200 else { throw APIError.invalid("A title has at most 200 characters.", param: "title") }
        return title
    }
}

extension API {
    /// A list's page parameters: `limit` (1 to 100, default 20) and `after`, the last id of the
    /// page before (an id of `listing`, such as "conversation").
    func pageParameters(of request: Request, listing: String) throws -> (limit: Int, after: UUID?) {
        let limit = request.uri.queryParameters.get("limit").map { Int($0) } ?? 20
        guard let limit, (1...100).contains(limit) else { throw APIError.invalid("limit must be 1 to 100.", param: "limit") }
        let after = try request.uri.queryParameters.get("after").map { text in
            guard let id = UUID(uuidString: text) else { throw APIError.invalid("after must be a \(listing) id.", param: "after") }
            return id
        }
        return (limit, after)
    }
}
