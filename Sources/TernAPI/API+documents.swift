import Foundation
import Hummingbird
import Logging
import TernAI
import TernQueue
import TernStore

/// A document as the documents API shows it.
struct DocumentObject: Encodable {
    let id: String
    var object = "document"
    let title: String
    let source: String
    let format: String
    /// processing, ready or failed.
    let status: String
    let bytes: Int
    let chunks: Int
    let error: String?
    let created_at: Int
    /// The ingestion job, whose events report progress (chunks done of total).
    let job_id: String?
    let events_url: String?

    init(_ document: StoredDocument) {
        id = document.id.uuidString.lowercased()
        title = document.title
        source = document.source
        format = document.format
        status = document.status
        bytes = document.bytes
        chunks = document.chunkCount
        error = document.error
        created_at = Int(document.createdAt.timeIntervalSince1970)
        job_id = document.jobID.map { JobID($0).rawValue }
        events_url = job_id.map { "/v1/jobs/\($0)/events" }
    }
}

struct DocumentPage: Encodable {
    var object = "list"
    let data: [DocumentObject]
    let has_more: Bool
    let last_id: String?
}

/// `POST /v1/documents`: the text of a document and how to read it.
struct DocumentUpload: JSONBody {
    let content: String
    /// text, markdown, html or pdf (then `content` is the PDF's bytes in base64; default: text).
    let format: String?
    let title: String?
    /// Where the document came from (a file name, a URL), shown back as given.
    let source: String?

    init(json: JSONObject) throws {
        content = try json.string("content")
        format = try json.optionalString("format")
        title = try json.optionalString("title")
        source = try json.optionalString("source")
    }
}

/// `POST /v1/search`, read by hand (`JSONBody`): a search's body is mostly its 384 numbers.
struct SearchRequest: JSONBody {
    let query: String
    /// The query's vector, if the caller has it; otherwise `query` is embedded.
    let embedding: [Float]?
    /// hybrid (default), vector or text.
    let mode: String?
    /// Only these of the caller's documents.
    let documents: [String]?
    let top_k: Int?

    init(json: JSONObject) throws {
        query = try json.string("query")
        embedding = try json.optionalFloats("embedding")
        mode = try json.optionalString("mode")
        documents = try json.optionalStrings("documents")
        top_k = try json.optionalInt("top_k")
    }
}

struct SearchResults: Encodable {
    struct Hit: Encodable {
        let document_id: String
        let title: String
        let chunk_id: Int64
        let position: Int
        let heading: String
        let text: String
        let score: Double
        let similarity: Double
    }

    var object = "list"
    let data: [Hit]
    let mode: String

    /// The same JSON as encoding it, written directly (`JSONText`): every search answers with it.
    var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + data.reduce(0) { $0 + 160 + $1.title.utf8.count + $1.heading.utf8.count + $1.text.utf8.count })
        buffer.writeString(#"{"object":"# + JSONText.string(object) + #","data":["#)
        for (index, hit) in data.enumerated() {
            if index > 0 { buffer.writeString(",") }
            buffer.writeString(#"{"document_id":"# + JSONText.string(hit.document_id) + #","title":"# + JSONText.string(hit.title))
            buffer.writeString(#","chunk_id":"# + String(hit.chunk_id) + #","position":"# + String(hit.position))
            buffer.writeString(#","heading":"# + JSONText.string(hit.heading) + #","text":"# + JSONText.string(hit.text))
            buffer.writeString(#","score":"# + JSONText.number(hit.score) + #","similarity":"# + JSONText.number(hit.similarity) + "}")
        }
        buffer.writeString(#"],"mode":"# + JSONText.string(mode) + "}")
        return buffer
    }
}

extension API {
    /// Documents (upload, list, read, delete) and search over their chunks, the caller's only:
    /// another user's document is a 404 and never a search hit.
    func addDocumentRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/documents") { request, _ in try await uploadDocument(request) }
        router.get("/v1/documents") { request, _ in
            let user = try await authenticate(request).user
            let (limit, after) = try pageParameters(of: request, listing: "document")
            let page = try await store.documents(of: user, limit: limit + 1, after: after)
            let shown = page.prefix(limit).map(DocumentObject.init)
            return try json(DocumentPage(data: Array(shown), has_more: page.count > limit, last_id: shown.last?.id))
        }
        router.get("/v1/documents/:id") { request, context in
            let user = try await authenticate(request).user
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), let document = try await store.document(id, of: user) else {
                throw APIError.documentNotFound
            }
            return try json(DocumentObject(document))
        }
        router.delete("/v1/documents/:id") { request, context in
            let user = try await authenticate(request).user
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), let document = try await store.deleteDocument(id, of: user) else {
                throw APIError.documentNotFound
            }
            // Its chunks went with it; an ingestion still running stops.
            if document.status == "processing", let job = document.jobID { _ = try? await queue.cancel(JobID(job)) }
            logger.info("document deleted", metadata: ["document": "\(id)", "user": "\(user)"])
            return try json(DocumentObject(document))
        }
        router.post("/v1/search") { request, _ in try await search(request) }
    }

    private func uploadDocument(_ request: Request) async throws -> Response {
        let caller = try await identifyCounting(request, generatingOn: queue)
        return try await whileCounted(caller) {
            let upload = try await decodeBody(DocumentUpload.self, of: request, what: "document")
            guard let model = configuration.embeddingModels.first else { throw APIError.noEmbeddingModel }
            let format = upload.format ?? "text"
            let formats = DocumentChunker.formats + ["pdf"]
            guard formats.contains(format) else {
                throw APIError.invalid("'format' must be one of \(formats.joined(separator: ", ")).", param: "format")
            }
            let content = upload.content.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !content.isEmpty else { throw APIError.invalid("'content' is empty.", param: "content") }
            if format == "pdf" {
                // The PDF's bytes as base64; a worker makes it text.
                guard let bytes = Data(base64Encoded: content), bytes.starts(with: Array("%PDF-".utf8)) else {
                    throw APIError.invalid("For format pdf, 'content' must be the PDF's bytes in base64.", param: "content")
                }
            }
            let title = (upload.title ?? (format == "pdf" ? upload.source ?? "PDF document" : Self.title(of: content)))
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard (1...200).contains(title.count) else { throw APIError.invalid("A document needs a title of 1 to 200 characters.", param: "title") }
            let source = upload.source ?? ""
            guard source.count <= 1000 else { throw APIError.invalid("'source' may hold at most 1000 characters.", param: "source") }
            return try await admitting(0, in: tokenBuckets(of: caller), for: caller, on: queue) {
                let jobID = JobID()
                let (document, created) = try await store.createDocument(
                    for: caller.user, title: title, source: source, format: format, content: content, jobID: jobID.uuid)
                guard created else { return try json(DocumentObject(document)) }
                let payload = DocumentIngestJob(documentID: document.id, userID: caller.user.uuid, model: model)
                do {
                    _ = try await queue.enqueue(NewJob(
                        id: jobID, type: DocumentIngestJob.type, tenant: caller.user.tenant,
                        payload: String(decoding: try JSONEncoder().encode(payload), as: UTF8.self), lane: .batch))
                } catch {
                    // Not enqueued: the upload did not happen.
                    _ = try? await store.deleteDocument(document.id, of: caller.user)
                    throw error.isBacklogFull ? APIError.queueFull : error
                }
                logger.info("document uploaded", metadata: ["document": "\(document.id)", "user": "\(caller.user)", "bytes": "\(document.bytes)"])
                return try json(DocumentObject(document), status: .accepted, headers: [.location: "/v1/documents/\(DocumentObject(document).id)"])
            }
        }
    }

    /// A title from the content: its first line, without Markdown's heading marks.
    static func title(of content: String) -> String {
        let line = content.prefix { !$0.isNewline }.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "#")))
        return String(line.prefix(80))
    }

    private func search(_ request: Request) async throws -> Response {
        let caller = try await identifyCounting(request)
        return try await whileCounted(caller) {
            let body = try await decodeBody(SearchRequest.self, of: request, what: "search")
            guard let mode = SearchMode(rawValue: body.mode ?? "hybrid") else {
                throw APIError.invalid("'mode' must be hybrid, vector or text.", param: "mode")
            }
            let limit = body.top_k ?? 10
            guard (1...50).contains(limit) else { throw APIError.invalid("'top_k' must be 1 to 50.", param: "top_k") }
            let query = body.query
            guard !query.isEmpty else { throw APIError.invalid("'query' is empty.", param: "query") }
            guard query.count <= configuration.limits.maximumPromptCharacters else {
                throw APIError(.contentTooLarge, code: "prompt_too_large", message: "The query is too long.", param: "query")
            }
            var embedding = body.embedding
            if let embedding,
               embedding.count != Store.embeddingDimensions || !embedding.allSatisfy(\.isFinite) || !embedding.contains(where: { $0 != 0 }) {
                throw APIError.invalid("'embedding' must hold \(Store.embeddingDimensions) finite numbers, not all zero.", param: "embedding")
            }
            let documents = try body.documents.map { ids in
                guard ids.count <= 1000 else { throw APIError.invalid("'documents' may list at most 1000 ids.", param: "documents") }
                return try ids.map { text in
                    guard let id = UUID(uuidString: text) else { throw APIError.invalid("'documents' must hold document ids.", param: "documents") }
                    return id
                }
            }
            if embedding == nil, mode != .text {
                // The query is embedded by a worker, as any embedding request is.
                guard let model = configuration.embeddingModels.first else { throw APIError.noEmbeddingModel }
                embedding = try await embeddingsOf(try await enqueueEmbedding(of: [query], model: model, for: caller)).vectors.first
            } else {
                try await caller.admitted()
            }
            let hits = try await store.search(user: caller.user, text: query, embedding: embedding, mode: mode, documents: documents, limit: limit)
            let results = SearchResults(data: hits.map {
                .init(
                    document_id: $0.documentID.uuidString.lowercased(), title: $0.title, chunk_id: $0.chunkID, position: $0.position,
                    heading: $0.heading, text: $0.content, score: $0.score, similarity: $0.similarity)
            }, mode: mode.rawValue)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: results.json))
        }
    }
}
