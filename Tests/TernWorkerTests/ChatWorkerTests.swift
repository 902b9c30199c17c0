import Foundation
import Testing
import TernAI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport
@testable import TernWorker

/// The worker against the real Redis, PostgreSQL and `tern mock-llm`.
@Suite struct ChatWorkerTests {
    /// Runs one chat job to its end and returns the tokens streamed and the stored messages.
    /// `prepareEvents` writes events before the job is enqueued (an earlier attempt's).
    func runJob(
        upstreamModel: String = "mock", prepareEvents: @escaping @Sendable (JobEvents, JobID) async throws -> Void = { _, _ in }
    ) async throws -> (tokens: [String], answer: [StoredMessage]) {
        try await ChatWorkerHarness.run(upstreamModel: upstreamModel) { harness in
            // The API reserved 900 of the caller's 1000 tokens a minute; the worker settles the real count.
            let bucket = TokenBudget.Bucket(key: "\(TestServices.uniqueName("tokens")):{\(harness.user)}:key", perMinute: 1000)
            try await harness.budget.reserve(900, in: [bucket])
            let (job, conversation) = try await harness.enqueue(bucket: bucket, reserved: 900) { job in
                try await prepareEvents(harness.events, job)
            }
            #expect(try await harness.ending(of: job) == "completed")
            #expect(try await harness.queue.status(job)?.state == .completed)
            // Settled: the few tokens used leave room for another 900.
            try await harness.budget.reserve(900, in: [bucket])
            let tokens = try await harness.events.all(job).compactMap { $0.type == "token" ? $0.fields["text"] : nil }
            #expect(try await harness.events.all(job).map(\.type).suffix(2) == ["done", "completed"])
            return (tokens, try await harness.store.messages(conversation: conversation, user: harness.user))
        }
    }

    /// Pieces 50 ms apart go out as they come, nearly always one event each (two share one only
    /// if writing an event took longer than the gap).
    @Test func streamsTokensStoresTheAnswerAndAcknowledges() async throws {
        let (tokens, stored) = try await runJob(upstreamModel: WorkerFaultTests.fault("slow=50"))
        #expect(tokens.joined() == ChatWorkerHarness.wholeAnswer)
        #expect(tokens.count >= 3 && tokens.allSatisfy(Self.isWholePieces))
        #expect(stored.last == StoredMessage(role: "assistant", content: ChatWorkerHarness.wholeAnswer))
    }

    /// Pieces that come while the last event is being written go out together, in order, none
    /// lost or repeated: an instant upstream's answer takes fewer events than it has pieces.
    @Test func piecesThatComeTogetherGoOutAsOneEvent() async throws {
        let (tokens, stored) = try await runJob()
        #expect(tokens.joined() == ChatWorkerHarness.wholeAnswer)
        #expect(tokens.allSatisfy(Self.isWholePieces))
        #expect(stored.last == StoredMessage(role: "assistant", content: ChatWorkerHarness.wholeAnswer))
    }

    /// Whether an event's text is one or more of the mock's pieces ("Mock answer", " token N").
    static func isWholePieces(_ text: String) -> Bool {
        text.wholeMatch(of: /(Mock answer)?( token \d+)*/) != nil && !text.isEmpty
    }

    @Test func theModelsSystemPromptGoesFirst() async throws {
        // The mock counts the words it is sent: 4 of the system prompt, 2 of "Say something".
        let usage = try await ChatWorkerHarness.run(systemPrompt: "Be brief and kind.") { harness in
            let (job, _) = try await harness.enqueue()
            #expect(try await harness.ending(of: job) == "completed")
            return try await harness.usage(job)
        }
        #expect(usage?.promptTokens == 6)
    }

    @Test func retryDoesNotRepeatWhatAnEarlierAttemptStreamed() async throws {
        // An earlier attempt streamed two pieces, then its worker died.
        let (tokens, stored) = try await runJob { events, job in
            try await events.append(job, ChatEvent.started(attempt: 1).fields)
            try await events.append(job, ChatEvent.token("Mock answer").fields)
            try await events.append(job, ChatEvent.token(" tok").fields)
        }
        #expect(tokens.joined() == ChatWorkerHarness.wholeAnswer)
        #expect(stored.last?.content == ChatWorkerHarness.wholeAnswer)
    }

    @Test func aJobWhoseRowsComeAfterItsAnswerIsStoredOnceTheyCome() async throws {
        // The API stores the rows while the job is enqueued; here the worker is far quicker.
        try await ChatWorkerHarness.run { harness in
            let (job, conversation) = try await harness.enqueue(storingRows: false)
            let streamed = try await eventually { try await harness.chatEvents(job).contains { $0.usage != nil } }
            #expect(streamed)
            #expect(try await harness.queue.status(job)?.state == .active)  // waiting for its row
            try await harness.storeRows(of: job, conversation: conversation)
            #expect(try await harness.ending(of: job) == "completed")
            #expect(try await harness.store.messages(conversation: conversation, user: harness.user).last?.content == ChatWorkerHarness.wholeAnswer)
        }
    }

    @Test func aJobThatFailsBeforeItsRowsComeIsStoredAsFailed() async throws {
        try await ChatWorkerHarness.run { harness in
            // No worker serves this model: the job fails as soon as it is claimed, before its
            // rows are stored, and its worker waits for them to record why.
            let (job, conversation) = try await harness.enqueue(model: "unserved", storingRows: false)
            let claimed = try await eventually { try await harness.queue.status(job)?.state == .active }
            #expect(claimed)
            try await harness.storeRows(of: job, conversation: conversation, model: "unserved")
            #expect(try await harness.ending(of: job) == "failed")
        }
    }
}
