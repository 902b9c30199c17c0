import Foundation
import Testing
import TernAI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport
@testable import TernWorker

/// Documents ingested through the queue: chunked, embedded in batches through the embedding
/// queue (against `tern mock-llm`), stored, with progress on the job's stream.
@Suite struct IngestionTests {
    /// Runs an ingestion worker and an embedding worker while `body` runs.
    func withWorkers<Result: Sendable>(
        model: String, batchSize: Int = 4,
        _ body: @escaping @Sendable (Store, RedisJobQueue, JobEvents, UserID) async throws -> Result
    ) async throws -> Result {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { redis in
                let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName("ingest")), client: redis)
                let embeddingQueue = RedisJobQueue(name: QueueName(TestServices.uniqueName("ingest-embeddings")), client: redis)
                try await embeddingQueue.setLimits(ProviderLimits(concurrency: 2), for: model)
                let events = JobEvents(queue: queue)
                let user = try await store.ensureUser(email: TestServices.uniqueName("ingest") + "@test")
                let provider = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: model))
                let embeddings = EmbeddingJobHandler(
                    events: JobEvents(queue: embeddingQueue), store: store, routes: [ModelRoute(model: model, provider: provider)],
                    budget: TokenBudget(redis: redis), logger: TestServices.logger)
                let ingestion = IngestionJobHandler(
                    events: events, store: store, embeddingQueue: embeddingQueue, embeddingEvents: JobEvents(queue: embeddingQueue),
                    chunker: DocumentChunker(maximumTokens: 32, overlapTokens: 8), batchSize: batchSize, logger: TestServices.logger)
                var batches = JobWorker.Configuration()
                batches.batchSize = 16
                let workers = [
                    JobWorker(configuration: batches, queue: embeddingQueue, handlers: [EmbeddingJob.type: embeddings], logger: TestServices.logger),
                    JobWorker(configuration: .init(), queue: queue, handlers: [DocumentIngestJob.type: ingestion], logger: TestServices.logger),
                ]
                return try await withThrowingTaskGroup(of: Result?.self) { group in
                    for worker in workers {
                        group.addTask {
                            try await worker.run()
                            return nil
                        }
                    }
                    defer { group.cancelAll() }
                    return try await body(store, queue, events, user)
                }
            }
        }
    }

    static let guide = (1...12).map { section in
        "## Part \(section)\n\n" + (1...3).map { "Fact \(section).\($0): the quartermaster keeps item \(section * 10 + $0) in crate \($0)." }.joined(separator: " ")
    }.joined(separator: "\n\n")

    func ingest(
        _ store: Store, _ queue: RedisJobQueue, _ user: UserID, content: String, format: String = "markdown", model: String
    ) async throws -> (StoredDocument, JobID) {
        let job = JobID()
        let (document, created) = try await store.createDocument(for: user, title: "Guide", source: "guide.md", format: format, content: content, jobID: job.uuid)
        #expect(created)
        let payload = DocumentIngestJob(documentID: document.id, userID: user.uuid, model: model)
        _ = try await queue.enqueue(NewJob(
            id: job, type: DocumentIngestJob.type, tenant: "\(user)", payload: String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)))
        return (document, job)
    }

    @Test func aDocumentIsChunkedEmbeddedInBatchesAndStoredWithProgress() async throws {
        let model = TestServices.uniqueName("mock-ingest")
        try await withWorkers(model: model) { store, queue, events, user in
            let (document, job) = try await ingest(store, queue, user, content: Self.guide, model: model)
            let ready = try await eventually(timeout: .seconds(120)) { try await store.document(document.id, of: user)?.status == "ready" }
            #expect(ready)
            let expected = DocumentChunker(maximumTokens: 32, overlapTokens: 8).chunks(of: Self.guide, format: "markdown")
            #expect(try await store.document(document.id, of: user)?.chunkCount == expected.count)
            // Progress: from 0 to every chunk, a batch at a time, then the job completed (its
            // event follows the document's status).
            #expect(try await eventually { try await events.all(job).last?.type == "completed" })
            let entries = try await events.all(job)
            let done = entries.filter { $0.type == "progress" }.compactMap { $0.fields["done"].flatMap(Int.init) }
            #expect(done.first == 0 && done.last == expected.count && done == done.sorted())
            #expect(entries.allSatisfy { $0.type != "progress" || $0.fields["total"] == String(expected.count) })
            #expect(entries.last?.type == "completed")
            // Each chunk's vector is its text's (with its heading), in order.
            let seen = try await mockStats(MockEmbeddingStats.self)
            #expect(seen.embedding_inputs[model] == expected.count)
            let hits = try await store.search(user: user, text: "quartermaster crate", embedding: nil, mode: .text, limit: 50)
            #expect(Set(hits.map(\.position)) == Set(0..<expected.count))
            let control = OpenAIProvider(configuration: .init(baseURL: TestServices.llmURL, model: "mock"))
            let first = expected[0]
            let vector = try await control.embed([first.heading + "\n\n" + first.content]).vectors[0]
            #expect(try await store.search(user: user, text: "", embedding: vector, mode: .vector, limit: 1).first?.position == 0)
        }
    }

    @Test func aRetriedIngestionGoesOnAfterTheChunksAlreadyStored() async throws {
        let model = TestServices.uniqueName("mock-ingest")
        try await withWorkers(model: model) { store, queue, events, user in
            let expected = DocumentChunker(maximumTokens: 32, overlapTokens: 8).chunks(of: Self.guide, format: "markdown")
            // An earlier attempt stored the first five chunks, then its worker died.
            let job = JobID()
            let (document, _) = try await store.createDocument(for: user, title: "Guide", source: "", format: "markdown", content: Self.guide, jobID: job.uuid)
            try await store.storeChunks(expected.prefix(5).enumerated().map {
                NewChunk(position: $0.offset, heading: $0.element.heading, content: $0.element.content, tokens: $0.element.tokens, embedding: Array(repeating: 0.05, count: 384))
            }, of: document.id)
            let payload = DocumentIngestJob(documentID: document.id, userID: user.uuid, model: model)
            _ = try await queue.enqueue(NewJob(
                id: job, type: DocumentIngestJob.type, tenant: "\(user)", payload: String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)))
            let ready = try await eventually(timeout: .seconds(120)) { try await store.document(document.id, of: user)?.status == "ready" }
            #expect(ready)
            #expect(try await store.document(document.id, of: user)?.chunkCount == expected.count)
            #expect(try await mockStats(MockEmbeddingStats.self).embedding_inputs[model] == expected.count - 5)
        }
    }

    /// A one-page PDF showing `lines` in Helvetica.
    static func pdf(_ lines: [String]) -> Data {
        let text = lines.enumerated().map { "BT /F1 12 Tf 72 \(720 - $0.offset * 16) Td (\($0.element)) Tj ET" }.joined(separator: "\n")
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            "<< /Length \(text.utf8.count) >>\nstream\n\(text)\nendstream",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        var document = "%PDF-1.4\n"
        var offsets: [Int] = []
        for (index, object) in objects.enumerated() {
            offsets.append(document.utf8.count)
            document += "\(index + 1) 0 obj\n\(object)\nendobj\n"
        }
        let xref = document.utf8.count
        document += "xref\n0 \(objects.count + 1)\n0000000000 65535 f \n"
        for offset in offsets { document += String(repeating: "0", count: 10 - String(offset).count) + "\(offset) 00000 n \n" }
        document += "trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
        return Data(document.utf8)
    }

    @Test func aPDFIsMadeTextAndIngestedAndABrokenOneFailsClearly() async throws {
        let model = TestServices.uniqueName("mock-ingest")
        try await withWorkers(model: model) { store, queue, _, user in
            let pdf = Self.pdf(["Harbour notice.", "The lighthouse lamp is serviced every Tuesday."])
            let (document, _) = try await ingest(store, queue, user, content: pdf.base64EncodedString(), format: "pdf", model: model)
            let ready = try await eventually(timeout: .seconds(120)) { try await store.document(document.id, of: user)?.status == "ready" }
            #expect(ready)
            let hits = try await store.search(user: user, text: "lighthouse Tuesday", embedding: nil, mode: .text)
            #expect(hits.first?.documentID == document.id)
            #expect(hits.first?.content.contains("The lighthouse lamp is serviced every Tuesday.") == true)

            let (broken, _) = try await ingest(store, queue, user, content: Data("%PDF-1.4 not really".utf8).base64EncodedString(), format: "pdf", model: model)
            let failed = try await eventually(timeout: .seconds(120)) { try await store.document(broken.id, of: user)?.status == "failed" }
            #expect(failed)
            #expect(try await store.document(broken.id, of: user)?.error == "the PDF could not be read")
        }
    }
}
