import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TernAI
import TernQueue
import TernStore
import TernTestSupport
@testable import TernWorker

/// Each of `tern mock-llm`'s faults, through the whole worker path (queue, model call, event
/// stream, database): what a client reading the job's events sees, and that the job ends, is
/// recorded as ended, and leaves nothing waiting or running.
@Suite struct WorkerFaultTests {
    /// A model name no other test uses, so `times=` counts only this test's requests.
    static func fault(_ options: String) -> String { "mock:\(options),id=\(UUID().uuidString)" }

    /// Runs one job against `fault`; returns the database's ending, the streamed text and the last event.
    func run(
        _ fault: String, maxTokens: Int = 5, gapTimeout: TimeAmount = .seconds(30),
        provider configure: @escaping @Sendable (inout OpenAIProvider.Configuration) -> Void = { _ in }
    ) async throws -> (status: String?, text: String, last: ChatEvent?) {
        try await ChatWorkerHarness.run(upstreamModel: fault, gapTimeout: gapTimeout, provider: configure) { harness in
            let (job, _) = try await harness.enqueue(maxTokens: maxTokens)
            let status = try await harness.ending(of: job)
            #expect(try await harness.queueIsIdle())
            return (status, try await harness.streamedText(job), try await harness.chatEvents(job).last)
        }
    }

    func isError(_ event: ChatEvent?, code: String = "upstream_error") -> Bool {
        if case .failed(code, _) = event { return true }
        return false
    }

    @Test func throttlingIsRetriedAfterItsRetryAfterAndTheAnswerIsWhole() async throws {
        let (status, text, _) = try await run(Self.fault("status=429,retry-after=1,times=2"))
        #expect(status == "completed")
        #expect(text == ChatWorkerHarness.wholeAnswer)
    }

    @Test func aServerErrorIsRetried() async throws {
        let (status, text, _) = try await run(Self.fault("status=503,times=1"))
        #expect(status == "completed")
        #expect(text == ChatWorkerHarness.wholeAnswer)
    }

    @Test func aRefusedRequestFailsTheJobWithAnErrorEvent() async throws {
        let (status, text, last) = try await run(Self.fault("status=400"))
        #expect(status == "failed")
        #expect(text.isEmpty)
        #expect(isError(last))
    }

    @Test func aHangBeforeTheFirstTokenTimesOutAndIsRetried() async throws {
        let (status, text, _) = try await run(Self.fault("hang,after=0,times=1")) { $0.firstTokenTimeout = .seconds(1) }
        #expect(status == "completed")
        #expect(text == ChatWorkerHarness.wholeAnswer)
    }

    @Test func aHangMidStreamEndsWithAnErrorAfterWhatWasStreamed() async throws {
        let (status, text, last) = try await run(Self.fault("hang,after=2"), gapTimeout: .seconds(1))
        #expect(status == "failed")
        #expect(text == "Mock answer token 1")
        #expect(isError(last))
    }

    @Test func aDisconnectBeforeTheFirstTokenIsRetried() async throws {
        let (status, text, _) = try await run(Self.fault("disconnect,after=0,times=1"))
        #expect(status == "completed")
        #expect(text == ChatWorkerHarness.wholeAnswer)
    }

    @Test func aDisconnectMidStreamEndsWithAnErrorAfterWhatWasStreamed() async throws {
        let (status, text, last) = try await run(Self.fault("disconnect,after=3"))
        #expect(status == "failed")
        // The mock's last writes before it drops the connection may be lost with it.
        #expect("Mock answer token 1 token 2".hasPrefix(text))
        #expect(isError(last))
    }

    @Test func malformedEventsEndWithAnError() async throws {
        let (status, text, last) = try await run(Self.fault("malformed,after=2"))
        #expect(status == "failed")
        #expect(text == "Mock answer token 1")
        #expect(isError(last))
    }

    @Test func slowTokensMakeAWholeAnswer() async throws {
        let (status, text, _) = try await run(Self.fault("slow=100"))
        #expect(status == "completed")
        #expect(text == ChatWorkerHarness.wholeAnswer)
    }

    @Test func anAnswerPastTheTotalTimeoutEndsWithAnError() async throws {
        let (status, text, last) = try await run(Self.fault("slow=300,tokens=100"), maxTokens: 100) { $0.totalTimeout = .seconds(2) }
        #expect(status == "failed")
        #expect(!text.isEmpty && Self.answer(pieces: 100).hasPrefix(text) && text != Self.answer(pieces: 100))
        #expect(isError(last))
    }

    static func answer(pieces: Int) -> String { (0..<pieces).map { $0 == 0 ? "Mock answer" : " token \($0)" }.joined() }
}

/// What the mock upstream saw of streams whose client left early.
struct MockAborts: Decodable {
    struct Abort: Decodable {
        let model: String
        let at_ms: Int64
    }
    let aborts: [Abort]
}

@Suite struct CancellationTests {
    @Test func cancellingAbortsTheUpstreamCallAtOnceAndRecordsTheTokensStreamed() async throws {
        // Pieces 5 ms apart: the mock notices its client has left at its next write, so the
        // gap between pieces is how late it can tell.
        let model = WorkerFaultTests.fault("slow=5,tokens=5000")
        try await ChatWorkerHarness.run(upstreamModel: model) { harness in
            let (job, conversation) = try await harness.enqueue(maxTokens: 5000)
            let started = try await eventually { try await harness.tokenCount(job) >= 3 }
            #expect(started)
            let cancelledAt = Int64(Date().timeIntervalSince1970 * 1000)
            let state = try await harness.queue.cancel(job)
            #expect(state == .active)
            let ending = try await harness.ending(of: job)
            #expect(ending == "cancelled")
            let idle = try await harness.queueIsIdle()
            #expect(idle)

            // The mock saw its client leave within 200 ms of the cancel call.
            let seen = try await eventually { try await Self.aborts(of: model).count == 1 }
            #expect(seen)
            let abort = try #require(try await Self.aborts(of: model).first)
            let delay = abort.at_ms - cancelledAt
            #expect(delay < 200, "the upstream call ended \(delay) ms after the cancel call")

            // Usage holds the pieces received: those streamed, and those of the last batch if
            // its event was still being written (a few at most, 5 ms apart); the partial answer
            // kept is the one streamed.
            let streamed = try await harness.streamedText(job).components(separatedBy: " token ").count
            let usage = try #require(try await harness.usage(job))
            #expect((streamed...streamed + 5).contains(usage.completionTokens), "\(usage.completionTokens) pieces used, \(streamed) streamed")
            #expect(usage.promptTokens > 0)
            let answer = try await harness.store.messages(conversation: conversation, user: harness.user).last
            let text = try await harness.streamedText(job)
            #expect(answer?.role == "assistant")
            #expect(answer?.content == text)
            let billed = try await harness.store.usage(of: harness.user, since: .distantPast).first?.completionTokens
            #expect(billed == usage.completionTokens)
        }
    }

    static func aborts(of model: String) async throws -> [MockAborts.Abort] {
        try await mockStats(MockAborts.self).aborts.filter { $0.model == model }
    }
}
