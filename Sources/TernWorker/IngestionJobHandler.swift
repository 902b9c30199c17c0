import Foundation
import Logging
import TernAI
import TernQueue
import TernRedis
import TernStore

/// Ingests uploaded documents: parses and chunks each one, embeds its chunks in batches
/// through the embedding queue (so they share the embedding model's slots, and its batching,
/// with everyone else's requests), stores them, and reports `progress` events (chunks done of
/// total) on the job's stream. A retried job picks up after the chunks already stored.
public struct IngestionJobHandler: JobHandler {
    let events: JobEvents
    let store: Store
    let embedder: QueuedEmbedder
    let chunker: DocumentChunker
    /// Chunks per embedding request.
    let batchSize: Int
    let logger: Logger

    public init(
        events: JobEvents, store: Store, embeddingQueue: any JobQueue, embeddingEvents: JobEvents, chunker: DocumentChunker = DocumentChunker(),
        batchSize: Int = 32, logger: Logger
    ) {
        self.events = events
        self.store = store
        self.embedder = QueuedEmbedder(queue: embeddingQueue, events: embeddingEvents, store: store)
        self.chunker = chunker
        self.batchSize = max(1, batchSize)
        self.logger = logger
    }

    public func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        guard let ingest = try? JSONDecoder().decode(DocumentIngestJob.self, from: Data(job.payload.utf8)) else {
            throw JobFailure(code: "invalid_job", "the job could not be read", retry: .never)
        }
        do {
            return try await handle(job, ingest)
        } catch let failure as PermanentFailure {
            logger.warning("document ingestion failed", metadata: ["job": "\(job.id)", "document": "\(ingest.documentID)", "reason": "\(failure.message)"])
            try await store.finishIngestion(of: ingest.documentID, error: failure.message)
            throw JobFailure(code: "ingestion_failed", failure.message, retry: .never)
        } catch where job.attempt >= job.maximumAttempts && !Task.isCancelled {
            // The last attempt failed: the document must not stay `processing` (a failure
            // recorded already keeps its own reason).
            try? await store.finishIngestion(of: ingest.documentID, error: "the document could not be ingested")
            throw error
        }
    }

    private func handle(_ job: ClaimedJob, _ ingest: DocumentIngestJob) async throws -> JobOutcome {
        var logger = logger
        logger[metadataKey: "job"] = "\(job.id)"
        logger[metadataKey: "document"] = "\(ingest.documentID)"
        guard let document = try await store.documentForIngestion(ingest.documentID) else {
            logger.info("document deleted before ingestion")
            return JobOutcome()
        }
        let chunks = document.format == "pdf"
            ? chunker.chunks(of: try await PDFText.text(ofBase64: document.content), format: "text")
            : chunker.chunks(of: document.content, format: document.format)
        var done = try await store.storedChunkCount(of: ingest.documentID)
        var tokens = 0
        try await progress(job, done: done, total: chunks.count)
        while done < chunks.count {
            let batch = Array(chunks[done..<min(done + batchSize, chunks.count)])
            let embeddings = try await embedder.embed(
                batch.map { $0.heading.isEmpty ? $0.content : $0.heading + "\n\n" + $0.content }, model: ingest.model, user: document.user)
            tokens += embeddings.promptTokens
            let stored = zip(batch, embeddings.vectors).enumerated().map { offset, pair in
                NewChunk(position: done + offset, heading: pair.0.heading, content: pair.0.content, tokens: pair.0.tokens, embedding: pair.1)
            }
            if try await store.storeChunks(stored, of: ingest.documentID) == 0, try await store.documentForIngestion(ingest.documentID) == nil {
                logger.info("document deleted during ingestion")
                return JobOutcome(tokens: tokens)
            }
            done += batch.count
            try await progress(job, done: done, total: chunks.count)
        }
        try await store.finishIngestion(of: ingest.documentID)
        logger.info("document ingested", metadata: ["chunks": "\(chunks.count)", "tokens": "\(tokens)"])
        return JobOutcome(tokens: tokens)
    }

    private func progress(_ job: ClaimedJob, done: Int, total: Int) async throws {
        try await events.append(job.id, ["type": "progress", "done": String(done), "total": String(total)])
    }
}

/// A failure that trying again will not mend (the model refused a text, a PDF cannot be
/// read); its message is safe to show the owner.
struct PermanentFailure: Error {
    let message: String
}

/// Embeds texts through the embedding queue, as `POST /v1/embeddings` does: batched with other
/// requests, within the embedding model's slots across all workers. The job is stored as the
/// user's, so its tokens count in their usage.
struct QueuedEmbedder: Sendable {
    let queue: any JobQueue
    let events: JobEvents
    let store: Store
    /// Longest wait for one embedding job.
    var timeout: Duration = .seconds(600)

    func embed(_ texts: [String], model: String, user: UserID) async throws -> Embeddings {
        let jobID = JobID()
        try await store.createJob(user: user, jobID: jobID.uuid, kind: EmbeddingJob.type, model: model)
        let payload = String(decoding: try JSONEncoder().encode(EmbeddingJob(userID: user.uuid, model: model, inputs: texts)), as: UTF8.self)
        _ = try await queue.enqueue(NewJob(id: jobID, type: EmbeddingJob.type, tenant: user.description, payload: payload, lane: .batch, provider: model))
        var outcome: EmbeddingOutcome?
        let deadline = ContinuousClock.now + timeout
        try await events.follow(jobID, after: "0", idle: .seconds(10)) { batch in
            outcome = batch.lazy.compactMap { EmbeddingOutcome(event: $0.fields) }.first
            return outcome == nil
        } onIdle: {
            ContinuousClock.now < deadline
        }
        switch outcome {
        case .vectors(let embeddings) where embeddings.vectors.count == texts.count: return embeddings
        case .failed(_, let message): throw PermanentFailure(message: message)
        case .cancelled: throw PermanentFailure(message: "the embedding was cancelled")
        case .vectors, .noVectors: throw PermanentFailure(message: "the embedding returned no vectors")
        case nil: throw JobFailure(code: "embedding_timeout", "no embedding within \(timeout)")  // retried
        }
    }
}

/// Finds what a chat with documents answers from: embeds the question through the embedding
/// queue and runs the hybrid search over the owner's documents (only theirs: the search joins
/// them by owner).
public struct DocumentRetriever: Sendable {
    let embedder: QueuedEmbedder
    let store: Store
    /// The embedding model the documents were embedded with.
    let model: String
    /// Chunks given to the model.
    let limit: Int

    public init(store: Store, embeddingQueue: any JobQueue, embeddingEvents: JobEvents, model: String, limit: Int = 5) {
        embedder = QueuedEmbedder(queue: embeddingQueue, events: embeddingEvents, store: store)
        self.store = store
        self.model = model
        self.limit = limit
    }

    /// The best chunks for `question` among `documents` (all the user's if empty), numbered.
    func sources(for question: String, user: UserID, documents: [UUID]) async throws -> [(citation: Citation, text: String)] {
        let question = String(question.prefix(2000))
        let vector = try await embedder.embed([question], model: model, user: user).vectors.first
        let hits = try await store.search(
            user: user, text: question, embedding: vector, documents: documents.isEmpty ? nil : documents, limit: limit)
        return hits.enumerated().map { offset, hit in
            (Citation(index: offset + 1, documentID: hit.documentID, chunkID: hit.chunkID, title: hit.title, heading: hit.heading, text: hit.content), hit.content)
        }
    }
}
