import Foundation
import PostgresNIO
import Testing
import TernStore
import TernTestSupport

/// Documents and search against the real PostgreSQL + pgvector: the owner filter is part of
/// every search, and a filter that keeps 1% of the chunks keeps the recall of the HNSW index.
@Suite(.serialized) struct DocumentSearchTests {
    /// A unit vector in `dimensions` dimensions from a seeded generator.
    static func randomVector(_ generator: inout some RandomNumberGenerator, dimensions: Int = 384) -> [Float] {
        let values = (0..<dimensions).map { _ in Float.random(in: -1...1, using: &generator) }
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return values.map { $0 / norm }
    }

    @Test func twoUsersWithTheSameTextEachFindOnlyTheirOwnChunks() async throws {
        try await TestServices.withStore { store in
            var generator = SystemRandomNumberGenerator()
            let text = "The lighthouse keeper \(UUID().uuidString) logs every passing ship."
            let embedding = Self.randomVector(&generator)
            var owned: [UserID: UUID] = [:]
            for name in ["alice", "bob"] {
                let user = try await store.ensureUser(email: TestServices.uniqueName(name) + "@test")
                let (document, created) = try await store.createDocument(
                    for: user, title: name, source: "", format: "text", content: text, jobID: UUID())
                #expect(created)
                // The same content again is the same document.
                let again = try await store.createDocument(for: user, title: name, source: "", format: "text", content: text, jobID: UUID())
                #expect(again.document.id == document.id && !again.created)
                #expect(try await store.storeChunks([NewChunk(position: 0, heading: "", content: text, tokens: 12, embedding: embedding)], of: document.id) == 1)
                owned[user] = document.id
            }
            for (user, document) in owned {
                for mode in SearchMode.allCases {
                    let hits = try await store.search(user: user, text: "lighthouse keeper", embedding: embedding, mode: mode)
                    #expect(hits.map(\.documentID) == [document], "\(mode)")
                }
                // Another user's document listed by id finds nothing either.
                let stranger = owned.first { $0.key != user }!.value
                #expect(try await store.search(user: user, text: "lighthouse", embedding: embedding, documents: [stranger]).isEmpty)
                #expect(try await store.document(stranger, of: user) == nil)
                #expect(try await store.deleteDocument(stranger, of: user) == nil)
            }
        }
    }

    @Test func aFilterKeepingOnePercentOfChunksKeepsTheRecall() async throws {
        try await TestServices.withStore { store in
            var generator = SeededGenerator(seed: 7)
            let words = (0..<300).map { "word\($0)" }
            func sentence() -> String { (0..<12).map { _ in words.randomElement(using: &generator)! }.joined(separator: " ") }
            // 10,000 chunks: the searching user owns 100 of them (1%), others the rest.
            let owner = try await store.ensureUser(email: TestServices.uniqueName("recall") + "@test")
            let others = try await store.ensureUser(email: TestServices.uniqueName("others") + "@test")
            for (user, documents) in [(owner, 2), (others, 198)] {
                for index in 0..<documents {
                    let (document, _) = try await store.createDocument(
                        for: user, title: "doc \(index)", source: "", format: "text", content: UUID().uuidString, jobID: UUID())
                    let chunks = (0..<50).map { position in
                        NewChunk(position: position, heading: "", content: sentence(), tokens: 12, embedding: Self.randomVector(&generator))
                    }
                    try await store.storeChunks(chunks, of: document.id)
                }
            }
            try await store.client.query("ANALYZE chunks")
            try await store.client.query("ANALYZE documents")
            var found = 0, expected = 0
            for _ in 0..<20 {
                let query = Self.randomVector(&generator)
                let text = "\(words.randomElement(using: &generator)!) \(words.randomElement(using: &generator)!)"
                for mode in [SearchMode.vector, .hybrid] {
                    let exact = try await store.search(user: owner, text: text, embedding: query, mode: mode, exact: true)
                    let indexed = try await store.search(user: owner, text: text, embedding: query, mode: mode)
                    #expect(exact.count == 10)
                    found += Set(indexed.map(\.chunkID)).intersection(exact.map(\.chunkID)).count
                    expected += exact.count
                }
            }
            let recall = Double(found) / Double(expected)
            #expect(recall >= 0.95, "recall@10 \(recall)")
        }
    }
}

/// A deterministic generator (SplitMix64) for generated corpora.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
