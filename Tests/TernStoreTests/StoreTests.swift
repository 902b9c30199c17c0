import Foundation
import PostgresNIO
import Testing
import TernStore
import TernTestSupport

/// Against the real PostgreSQL + pgvector started by scripts/test.
@Suite struct StoreTests {
    @Test func migrationsAreIdempotentAndEnablePgvector() async throws {
        try await TestServices.withStore { store in
            #expect(try await store.migrate().isEmpty)  // withStore already migrated
            let rows = try await store.client.query("SELECT '[1,2,3]'::vector <=> '[1,2,3]'::vector")
            for try await distance in rows.decode(Double.self) { #expect(distance == 0) }
        }
    }

    @Test func apiKeysAreStoredHashedAndResolveToTheirUser() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("keys") + "@test")
            let key = try await store.createAPIKey(for: user, name: "test")
            #expect(key.secret.hasPrefix("tern_"))
            #expect(try await store.user(forAPIKey: key.secret) == user)
            #expect(try await store.user(forAPIKey: key.secret + "x") == nil)
            #expect(try await store.user(forAPIKey: "garbage") == nil)
            // Only the SHA-256 of the key is stored; no column holds the key itself.
            let stored = try await store.client.query("""
                SELECT count(*) FROM api_keys WHERE key_hash = sha256(convert_to(\(key.secret), 'UTF8'))
                AND strpos(api_keys::text, \(key.secret)) = 0
                """)
            for try await count in stored.decode(Int.self) { #expect(count == 1) }
        }
    }

    @Test func completingAChatJobStoresTheAnswerOnce() async throws {
        try await TestServices.withStore { store in
            let user = try await store.ensureUser(email: TestServices.uniqueName("chat") + "@test")
            let job = UUID()
            let conversation = try await store.createChat(
                user: user, jobID: job, model: "m", title: "t", messages: [StoredMessage(role: "user", content: "hi")])
            let usage = TokenUsage(promptTokens: 3, completionTokens: 2)
            let citations = #"[{"index": 1, "chunk_id": 7}]"#
            // The row is written as the job ends, with the attempt that ended it and its start.
            let started = Date(timeIntervalSince1970: 1_700_000_000.25)
            let run = JobRun(attempt: 2, startedAt: started)
            #expect(try await store.completeChatJob(job, answer: "hello", model: "m", usage: usage, citations: citations, run: run))
            #expect(try await store.completeChatJob(job, answer: "hello", model: "m", usage: usage, run: run) == false)
            #expect(try await store.jobStatus(job, user: user)?.attempts == 2)
            let rows = try await store.client.query("SELECT started_at FROM jobs WHERE id = \(job)")
            for try await startedAt in rows.decode(Date.self) { #expect(abs(startedAt.timeIntervalSince(started)) < 0.001) }
            #expect(try await store.messages(conversation: conversation, user: user)
                    == [StoredMessage(role: "user", content: "hi"), StoredMessage(role: "assistant", content: "hello", citations: citations)])
            #expect(try await store.jobStatus(job, user: user)?.status == "completed")
            // Another user sees nothing of it.
            let other = try await store.ensureUser(email: TestServices.uniqueName("other") + "@test")
            #expect(try await store.messages(conversation: conversation, user: other).isEmpty)
            #expect(try await store.jobStatus(job, user: other) == nil)
        }
    }

    @Test func rejectsMalformedDatabaseURLs() {
        #expect(throws: StoreError.self) { try Store.configuration(url: "mysql://x/y") }
        #expect(throws: StoreError.self) { try Store.configuration(url: "postgres:///nohost") }
        #expect(throws: StoreError.self) { try Store.configuration(url: "postgres://h/db?sslmode=sometimes") }
    }
}

/// A database that is away: statements give up at the store's deadline with `unavailable`,
/// instead of waiting in the pool for a connection without end; once one has, the next ones
/// give up after 1 s.
@Suite struct StoreUnavailableTests {
    @Test func statementsGiveUpAtTheDeadlineWhenTheServerIsAway() async throws {
        try await TestServices.withStoreAway(deadline: .seconds(2)) { store in
            let first = await #expect(throws: StoreError.self) { try await store.conversations(of: UserID(UUID()), limit: 10, after: nil) }
            #expect(first?.code == .unavailable)
            #expect(first.map(StoreError.isUnavailable) == true)
            #expect(first?.message == "PostgreSQL did not answer within \(Duration.seconds(2))")
            let next = await #expect(throws: StoreError.self) { try await store.conversations(of: UserID(UUID()), limit: 10, after: nil) }
            #expect(next?.message == "PostgreSQL did not answer within \(Duration.seconds(1))")
            await #expect(throws: StoreError.self) { try await store.ping() }
        }
    }
}
