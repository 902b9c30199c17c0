import Crypto
import Foundation
import PostgresNIO

/// A document as its owner sees it (never its content in lists).
public struct StoredDocument: Sendable, Equatable {
    public let id: UUID
    public let title: String
    public let source: String
    public let format: String
    public let status: String
    public let chunkCount: Int
    public let bytes: Int
    public let error: String?
    public let jobID: UUID?
    public let createdAt: Date
}

/// One chunk of a document, ready to store.
public struct NewChunk: Sendable, Equatable {
    public var position: Int
    /// The headings above the chunk, outermost first, joined with " > ".
    public var heading: String
    public var content: String
    public var tokens: Int
    public var embedding: [Float]

    public init(position: Int, heading: String, content: String, tokens: Int, embedding: [Float]) {
        self.position = position
        self.heading = heading
        self.content = content
        self.tokens = tokens
        self.embedding = embedding
    }
}

/// A chunk found by a search.
public struct SearchHit: Sendable, Equatable {
    public let chunkID: Int64
    public let documentID: UUID
    public let title: String
    public let position: Int
    public let heading: String
    public let content: String
    /// Reciprocal rank fusion of the vector and full-text ranks (higher is better).
    public let score: Double
    /// Cosine similarity of the chunk to the query vector.
    public let similarity: Double
}

/// Which ranks a search fuses.
public enum SearchMode: String, Sendable, CaseIterable {
    case hybrid, vector, text
}

extension Store {
    /// The dimensions of the stored embeddings (the schema's `vector(384)`: all-MiniLM-L6-v2).
    public static let embeddingDimensions = 384

    static let documentColumns = "id, title, source, format, status, chunk_count, octet_length(content), error, job_id, created_at"

    /// The documents a statement returns (its columns: `documentColumns`).
    func fetchDocuments(_ query: PostgresQuery) async throws -> [StoredDocument] {
        var documents: [StoredDocument] = []
        for try await row in try await database.query(query, logger: logger).decode((UUID, String, String, String, String, Int, Int, String?, UUID?, Date).self) {
            documents.append(StoredDocument(
                id: row.0, title: row.1, source: row.2, format: row.3, status: row.4, chunkCount: row.5, bytes: row.6, error: row.7,
                jobID: row.8, createdAt: row.9))
        }
        return documents
    }

    /// Stores an uploaded document for ingestion, or finds the user's document with the same
    /// content: `created` says which. Uploading the same content twice is one document.
    public func createDocument(
        for user: UserID, title: String, source: String, format: String, content: String, jobID: UUID
    ) async throws -> (document: StoredDocument, created: Bool) {
        let hash = ByteBuffer(bytes: SHA256.hash(data: Array(content.utf8)))
        if let created = try await fetchDocuments("""
            INSERT INTO documents (id, user_id, title, source, format, content, content_hash, job_id)
            VALUES (\(UUID()), \(user.uuid), \(title), \(source), \(format), \(content), \(hash), \(jobID))
            ON CONFLICT (user_id, content_hash) DO NOTHING
            RETURNING \(unescaped: Self.documentColumns)
            """).first {
            return (created, true)
        }
        if let existing = try await fetchDocuments("""
            SELECT \(unescaped: Self.documentColumns) FROM documents WHERE user_id = \(user.uuid) AND content_hash = \(hash)
            """).first {
            return (existing, false)
        }
        throw StoreError(.notFound, "the document was neither stored nor found")
    }

    /// The user's documents, newest first: `limit` of them, after the one `after` if given.
    public func documents(of user: UserID, limit: Int, after: UUID?) async throws -> [StoredDocument] {
        try await fetchDocuments("""
            SELECT \(unescaped: Self.documentColumns) FROM documents
            WHERE user_id = \(user.uuid) AND (\(after)::uuid IS NULL OR (created_at, id) < (
                SELECT created_at, id FROM documents WHERE id = \(after) AND user_id = \(user.uuid)))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """)
    }

    /// One of the user's documents, or `nil`.
    public func document(_ id: UUID, of user: UserID) async throws -> StoredDocument? {
        try await fetchDocuments("""
            SELECT \(unescaped: Self.documentColumns) FROM documents WHERE id = \(id) AND user_id = \(user.uuid)
            """).first
    }

    /// Deletes one of the user's documents with its chunks; returns it (its ingestion job may
    /// still run), or `nil` if the user has no such document.
    public func deleteDocument(_ id: UUID, of user: UserID) async throws -> StoredDocument? {
        try await fetchDocuments("""
            DELETE FROM documents WHERE id = \(id) AND user_id = \(user.uuid) RETURNING \(unescaped: Self.documentColumns)
            """).first
    }

    /// What an ingestion job reads: the document's owner, format and content; `nil` once it is
    /// deleted.
    public func documentForIngestion(_ id: UUID) async throws -> (user: UserID, format: String, content: String)? {
        let rows = try await database.query("SELECT user_id, format, content FROM documents WHERE id = \(id)", logger: logger)
        for try await (user, format, content) in rows.decode((UUID, String, String).self) { return (UserID(user), format, content) }
        return nil
    }

    /// Stores chunks of a document in one statement; chunks already stored (a retried job)
    /// are kept. Returns how many were new. A deleted document stores nothing.
    @discardableResult
    public func storeChunks(_ chunks: [NewChunk], of document: UUID) async throws -> Int {
        guard !chunks.isEmpty else { return 0 }
        var sql = "INSERT INTO chunks (document_id, position, heading, content, tokens, embedding) SELECT v.* FROM (VALUES "
        var binds = PostgresBindings(capacity: chunks.count * 6)
        for (index, chunk) in chunks.enumerated() {
            let base = index * 6
            sql += (index == 0 ? "" : ", ") + "($\(base + 1)::uuid, $\(base + 2)::int, $\(base + 3)::text, $\(base + 4)::text, $\(base + 5)::int, $\(base + 6)::vector)"
            binds.append(document)
            binds.append(chunk.position)
            binds.append(chunk.heading)
            binds.append(chunk.content)
            binds.append(chunk.tokens)
            binds.append(PGVector(chunk.embedding))
        }
        sql += ") AS v (document_id, position, heading, content, tokens, embedding) JOIN documents d ON d.id = v.document_id"
        sql += " ON CONFLICT (document_id, position) DO NOTHING RETURNING position"
        let result = try await database.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
        var count = 0
        for try await _ in result { count += 1 }
        return count
    }

    /// Marks a document's ingestion finished, once: `ready` with its chunk count, or `failed`
    /// with a reason safe to show its owner.
    public func finishIngestion(of document: UUID, error: String? = nil) async throws {
        try await database.query("""
            UPDATE documents SET status = \(error == nil ? "ready" : "failed"), error = \(error), updated_at = now(),
                chunk_count = (SELECT count(*) FROM chunks WHERE document_id = \(document))
            WHERE id = \(document) AND status = 'processing'
            """, logger: logger)
    }

    /// The user's chunks that best match a query, in one statement: the vector ranks (cosine
    /// distance to `embedding`, through the HNSW index, which pgvector's iterative scan keeps
    /// searching until enough of the user's chunks are found) and the full-text ranks of
    /// `text` are fused by reciprocal rank (k = 60) over the top `candidates` of each. The
    /// owner filter is part of the query: only the user's documents (or the listed ones among
    /// them) are joined. `exact` turns the indexes off (a sequential scan: the reference
    /// answer for recall).
    public func search(
        user: UserID, text: String, embedding: [Float]?, mode: SearchMode = .hybrid, documents: [UUID]? = nil, limit: Int = 10,
        candidates: Int = 40, exact: Bool = false
    ) async throws -> [SearchHit] {
        let statement = SearchStatement(
            user: user.uuid, documents: documents, embedding: embedding.map(PGVector.init), useVector: mode != .text && embedding != nil,
            text: text, useText: mode != .vector && !text.isEmpty, candidates: Int32(clamping: candidates), limit: Int32(clamping: limit))
        @Sendable func read(_ rows: AsyncThrowingMapSequence<PostgresRowSequence, SearchHit>) async throws -> [SearchHit] {
            var hits: [SearchHit] = []
            for try await hit in rows { hits.append(hit) }
            return hits
        }
        guard exact else { return try await read(database.execute(statement, logger: logger)) }
        return try await database.withTransaction(logger: logger) { connection in
            try await connection.query("SET LOCAL enable_indexscan = off", logger: logger)
            try await connection.query("SET LOCAL enable_bitmapscan = off", logger: logger)
            return try await read(connection.execute(statement, logger: logger))
        }
    }
}

/// The search (`Store.searchSQL`), prepared once per connection: each run then sends only its
/// values, and its answer holds only the rows (no parse, parameter and row descriptions). As
/// with the chat statements, a connection remembers a failed preparation (PostgresNIO), so the
/// schema is migrated before an API serves (`tern migrate`, or `tern up`), and a migration that
/// changes `search_chunks`' result columns needs the API processes restarted.
struct SearchStatement: PostgresPreparedStatement {
    static let sql = Store.searchSQL
    static let bindingDataTypes: [PostgresDataType] = [.uuid, .uuidArray, PGVector.psqlType, .bool, .text, .bool, .int4, .int4]
    typealias Row = SearchHit

    let user: UUID
    let documents: [UUID]?
    let embedding: PGVector?
    let useVector: Bool
    let text: String
    let useText: Bool
    let candidates: Int32
    let limit: Int32

    func makeBindings() throws -> PostgresBindings {
        var binds = PostgresBindings(capacity: 8)
        binds.append(user)
        binds.append(documents)
        binds.append(embedding)
        binds.append(useVector)
        binds.append(text)
        binds.append(useText)
        binds.append(candidates)
        binds.append(limit)
        return binds
    }

    func decodeRow(_ row: PostgresRow) throws -> SearchHit {
        // Column by column: decoding the row as one tuple costs more than the rest of reading it.
        let cells = row.makeRandomAccess()
        let similarity = try cells[7].decode(Double.self)
        return SearchHit(
            chunkID: try cells[0].decode(Int64.self), documentID: try cells[1].decode(UUID.self),
            title: try cells[2].decode(String.self), position: try cells[3].decode(Int.self),
            heading: try cells[4].decode(String.self), content: try cells[5].decode(String.self),
            score: try cells[6].decode(Double.self),
            // A zero vector has no direction: its similarity to anything is NaN, shown as 0.
            similarity: similarity.isNaN ? 0 : similarity)
    }
}

extension Store {
    /// The search statement (`search(...)`), for running it elsewhere the same way (bench/vector
    /// prints it with `tern search-sql`). $1 user, $2 document ids or NULL, $3 query vector,
    /// $4 whether to rank by vector, $5 query text, $6 whether to rank by text, $7 candidates
    /// per ranking, $8 hits.
    public static let searchSQL = """
        SELECT chunk_id, document_id, title, chunk_position, heading, content, score, similarity
        FROM search_chunks($1, $2::uuid[], $3::vector, $4, $5, $6, $7::int, $8::int)
        """

    /// The search itself, a SQL function (migration 7) so that the server parses it once per
    /// connection, not on every call, and plans it for every call's values: the best plan
    /// depends on how many chunks the caller owns, and a plan cached for one user (a generic
    /// plan) can be slow for another. A change to it is a new migration with its new text.
    static let searchFunction = """
        CREATE OR REPLACE FUNCTION search_chunks(uuid, uuid[], vector, boolean, text, boolean, int, int)
        RETURNS TABLE (chunk_id bigint, document_id uuid, title text, chunk_position int, heading text, content text,
                       score float8, similarity float8)
        LANGUAGE sql STABLE SET plan_cache_mode = force_custom_plan
        AS $search$
        WITH owned AS (
            SELECT id FROM documents WHERE user_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
        ), nearest AS (
            SELECT c.id, c.embedding <=> $3::vector AS distance
            FROM chunks c JOIN owned d ON d.id = c.document_id
            WHERE $4 AND c.embedding IS NOT NULL
            ORDER BY c.embedding <=> $3::vector LIMIT $7
        ), vector_ranks AS (
            SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM nearest
        ), text_ranks AS (
            SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.search, q) DESC, c.id) AS rank
            FROM chunks c JOIN owned d ON d.id = c.document_id, websearch_to_tsquery('english', $5) q
            WHERE $6 AND c.search @@ q
            ORDER BY ts_rank_cd(c.search, q) DESC, c.id LIMIT $7
        ), fused AS (
            SELECT id, sum(1.0 / (60 + rank))::float8 AS score
            FROM (SELECT * FROM vector_ranks UNION ALL SELECT * FROM text_ranks) ranks GROUP BY id
        )
        SELECT c.id, c.document_id, d.title, c.position, c.heading, c.content, f.score,
            CASE WHEN $4 THEN (1 - (c.embedding <=> $3::vector))::float8 ELSE 0 END
        FROM fused f JOIN chunks c ON c.id = f.id JOIN documents d ON d.id = c.document_id
        ORDER BY f.score DESC, c.id LIMIT $8
        $search$
        """

    /// How many chunks of a document are stored (a retried ingestion goes on from there).
    public func storedChunkCount(of document: UUID) async throws -> Int {
        let rows = try await database.query("SELECT count(*)::int FROM chunks WHERE document_id = \(document)", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}
