import Foundation
import Logging
import ServiceLifecycle
import TernAI
import TernQueue
import TernRedis
import TernStore

/// Runs chat jobs: streams the model's answer into the job's event stream and stores the
/// answer and its usage. A retried job (its worker died mid-answer) never repeats what clients
/// already received, and an attempt that finished but died before acknowledging only finishes
/// the bookkeeping.
public struct ChatJobHandler: JobHandler {
    let queue: any JobQueue
    let events: JobEvents
    let store: Store
    /// The chat models this worker serves, by public name.
    let routes: [String: ModelRoute]
    /// Where the callers' tokens-a-minute reservations are settled.
    let budget: TokenBudget
    /// For chats with documents; without one (no embedding model), they fail.
    let retriever: DocumentRetriever?
    let logger: Logger

    public init(
        queue: any JobQueue, events: JobEvents, store: Store, routes: [ModelRoute], budget: TokenBudget, retriever: DocumentRetriever? = nil,
        logger: Logger
    ) {
        self.queue = queue
        self.events = events
        self.store = store
        self.routes = Dictionary(routes.map { ($0.model, $0) }, uniquingKeysWith: { first, _ in first })
        self.budget = budget
        self.retriever = retriever
        self.logger = logger
    }

    public func handle(_ job: ClaimedJob) async throws -> JobOutcome {
        var logger = logger
        logger[metadataKey: "job"] = "\(job.id)"
        logger[metadataKey: "attempt"] = "\(job.attempt)"
        return try await generate(job, logger: logger)
    }

    private func generate(_ job: ClaimedJob, logger: Logger) async throws -> JobOutcome {
        guard job.type == ChatJob.type, let chat = try? ChatJob(payload: job.payload) else {
            logger.error("job payload is not a chat job")
            throw try await fail(job, code: "invalid_job", message: "the job could not be read", logger: logger)
        }
        guard let route = routes[chat.model] else {
            if let finished = try await finishedEarlier(job, chat, earlier: earlierEvents(job), logger: logger) { return finished }
            logger.error("no route for the job's model", metadata: ["model": "\(chat.model)"])
            throw try await fail(job, code: "model_not_served", message: "no worker serves the model \(chat.model)", logger: logger)
        }
        var messages = route.prompt(chat.messages)
        var citations: [Citation]?
        if let documents = chat.documents {
            guard let retriever else {
                throw try await fail(job, code: "documents_unavailable", message: "no embedding model is configured for answering from documents", logger: logger)
            }
            let sources: [(citation: Citation, text: String)]
            do {
                sources = try await retriever.sources(
                    for: chat.messages.last { $0.role == "user" }?.content ?? "", user: UserID(chat.userID), documents: documents)
            } catch let failure as PermanentFailure {
                throw try await fail(job, code: "retrieval_failed", message: failure.message, logger: logger)
            }
            citations = sources.map(\.citation)
            messages = SourcesPrompt.messages(messages, sources: sources)
            try await events.append(job.id, ChatEvent.sources(sources.map(\.citation)).fields)
        }
        if let window = route.contextWindow {
            let reserve = chat.options.maxTokens ?? min(256, window / 4)
            let fitted = await PromptFitting.fit(messages, window: window, reserve: reserve, count: route.countTokens)
            // Cancelled while counting (the tokenizer's answer lost): stopped, not refused.
            if Task.isCancelled {
                let earlier = (try? await earlierEvents(job).streamedText) ?? ""
                try await stopped(job, chat, answer: "", earlier: earlier, pieces: 0, reported: nil, citations: citations, logger: logger)
            }
            guard let fitted else {
                throw try await fail(
                    job, code: "context_length_exceeded",
                    message: "the newest message does not fit the model's context window of \(window) tokens with \(reserve) left for the answer",
                    logger: logger)
            }
            if fitted.count < messages.count { logger.info("conversation trimmed to the context window", metadata: ["dropped": "\(messages.count - fitted.count)"]) }
            messages = fitted
        }
        // The model call starts first; what an earlier attempt left is read and the start is
        // announced while the model reads the prompt, off the way to the first token. The start
        // event still comes before any token.
        let answerParts = route.streamChat(messages: messages, options: chat.options)
        async let startAnnounced = events.append(job.id, ChatEvent.started(attempt: job.attempt).fields)
        let earlier = try await earlierEvents(job)
        if let finished = try await finishedEarlier(job, chat, earlier: earlier, logger: logger) {
            _ = try? await startAnnounced
            return finished
        }
        let streamedSoFar = earlier.streamedText

        // A retried job must not repeat what clients already received: text the earlier attempt
        // streamed is skipped while the new answer matches it, and a divergent answer fails the
        // job rather than show the client a spliced answer.
        var answer = ""
        var finish = (reason: "stop", promptTokens: 0, completionTokens: 0)
        var completionPieces = 0
        var reported: TokenUsage?
        do {
            for try await parts in answerParts {
                // The text of the batch that clients have not seen yet goes out as one event.
                var newText = ""
                for part in parts {
                    switch part {
                    case .text(let raw):
                        // PostgreSQL's text cannot hold NUL: the model's are dropped before anyone sees them.
                        let text = raw.contains("\u{0}") ? raw.replacingOccurrences(of: "\u{0}", with: "") : raw
                        completionPieces += 1
                        newText += try Self.unseen(adding: text, to: &answer, streamedSoFar: streamedSoFar)
                    case .finished(let reason, let prompt, let completion):
                        finish = (reason, prompt ?? 0, completion ?? completionPieces)
                        reported = TokenUsage(promptTokens: finish.promptTokens, completionTokens: finish.completionTokens)
                    }
                }
                if !newText.isEmpty {
                    _ = try await startAnnounced
                    try await events.append(job.id, ChatEvent.token(newText).fields)
                }
            }
        } catch {
            // The start event goes before the event that ends the job.
            _ = try? await startAnnounced
            switch error {
            case _ where Task.isCancelled:
                // Cancelled while a piece was being written: the same as between pieces, below.
                try await stopped(job, chat, answer: answer, earlier: streamedSoFar, pieces: completionPieces, reported: reported, citations: citations, logger: logger)
            case is Diverged:
                await budget.settle(buckets: chat.tokenBuckets, reserved: chat.reservedTokens, job: job.id, used: completionPieces, logger: logger)
                throw try await fail(job, code: "interrupted", message: "the model was interrupted mid-answer and could not resume it", logger: logger)
            case let error as ProviderError:
                logger.warning("model call failed", metadata: ["error": "\(error.message)"])
                await budget.settle(buckets: chat.tokenBuckets, reserved: chat.reservedTokens, job: job.id, used: completionPieces, logger: logger)
                throw try await fail(job, code: "upstream_error", message: error.publicMessage, logger: logger)
            default:
                throw error
            }
        }
        // Cancelled (or released by a stopping worker): the model call was aborted as the task
        // was cancelled, and the stream simply ended.
        if Task.isCancelled {
            _ = try? await startAnnounced
            try await stopped(job, chat, answer: answer, earlier: streamedSoFar, pieces: completionPieces, reported: reported, citations: citations, logger: logger)
        }
        // The event first: if the worker dies before storing, the next attempt finds `done` and
        // stores what was streamed, rather than generating (and perhaps diverging) again.
        _ = try await startAnnounced
        let usage = TokenUsage(promptTokens: finish.promptTokens, completionTokens: finish.completionTokens)
        try await events.append(job.id, ChatEvent.done(finishReason: finish.reason, promptTokens: usage.promptTokens, completionTokens: usage.completionTokens).fields)
        try await whenStored {
            try await store.completeChatJob(
                job.id.uuid, answer: answer, model: chat.model, usage: usage, citations: citations.map(Citation.json), run: JobRun(job))
        }
        await budget.settle(buckets: chat.tokenBuckets, reserved: chat.reservedTokens, job: job.id, used: usage.promptTokens + usage.completionTokens, logger: logger)
        logger.info("chat job completed", metadata: ["completion_tokens": "\(usage.completionTokens)"])
        return JobOutcome(tokens: usage.promptTokens + usage.completionTokens)
    }

    /// Adds a piece to this attempt's answer and returns the part of it clients have not seen:
    /// nothing while the answer still repeats what earlier attempts streamed; `Diverged` once
    /// it differs from that.
    private static func unseen(adding text: String, to answer: inout String, streamedSoFar: String) throws -> String {
        let before = answer.utf8.count
        let seen = streamedSoFar.utf8.count
        answer += text
        if answer.utf8.count <= seen {
            guard streamedSoFar.utf8.starts(with: answer.utf8) else { throw Diverged() }
            return ""
        }
        if before < seen {
            guard answer.utf8.starts(with: streamedSoFar.utf8) else { throw Diverged() }
        }
        // `answer` starts with `streamedSoFar`, so this cut is on a character boundary.
        return String(decoding: answer.utf8.dropFirst(max(before, seen)), as: UTF8.self)
    }

    /// The chat events earlier attempts (and this one, so far) wrote.
    private func earlierEvents(_ job: ClaimedJob) async throws -> [ChatEvent] {
        try await events.all(job.id).compactMap { ChatEvent(fields: $0.fields) }
    }

    /// If an earlier attempt finished but died before acknowledging, finishes its bookkeeping
    /// and returns its outcome; `nil` if none finished.
    private func finishedEarlier(_ job: ClaimedJob, _ chat: ChatJob, earlier: [ChatEvent], logger: Logger) async throws -> JobOutcome? {
        guard let usage = earlier.lazy.compactMap(\.usage).first else { return nil }
        let citations = earlier.lazy.compactMap { event -> [Citation]? in if case .sources(let citations) = event { citations } else { nil } }.last
        try await whenStored {
            try await store.completeChatJob(
                job.id.uuid, answer: earlier.streamedText, model: chat.model, usage: usage, citations: citations.map(Citation.json), run: JobRun(job))
        }
        await budget.settle(buckets: chat.tokenBuckets, reserved: chat.reservedTokens, job: job.id, used: usage.promptTokens + usage.completionTokens, logger: logger)
        return JobOutcome(tokens: usage.promptTokens + usage.completionTokens)
    }

    /// Records what a stopped attempt streamed and the tokens it used, then throws
    /// `CancellationError`. The upstream reports no usage for an aborted call (unless it had
    /// finished): then the prompt is estimated and each piece counts as a token. A job released
    /// by a stopping worker runs again, so its answer is not stored and its reservation stays.
    /// The task is cancelled, so the bookkeeping runs in a task of its own, which is not, and is
    /// tried again while the services are briefly unreachable.
    private func stopped(
        _ job: ClaimedJob, _ chat: ChatJob, answer: String, earlier: String, pieces: Int, reported: TokenUsage?, citations: [Citation]? = nil,
        logger: Logger
    ) async throws -> Never {
        // Every piece received counts, as the upstream bills it; the answer kept is what clients
        // saw: the job's token events, read back (the last batch may not have gone out), or, if
        // they cannot be read, this attempt's answer (an earlier one's if this one is behind).
        let received = answer.utf8.count >= earlier.utf8.count ? answer : earlier
        let usage = reported ?? TokenUsage(promptTokens: chat.messages.estimatedTokens, completionTokens: pieces)
        do {
            try await Task {
                guard try await Self.persistently({ try await queue.status(job.id)?.cancelRequested ?? false }) else { return }
                let answer = (try? await Self.persistently { try await earlierEvents(job).streamedText }) ?? received
                try await whenStored {
                    try await Self.persistently {
                        try await store.stopChatJob(
                            job.id.uuid, answer: answer, model: chat.model, usage: usage, citations: citations.map(Citation.json), run: JobRun(job))
                    }
                }
                await budget.settle(buckets: chat.tokenBuckets, reserved: chat.reservedTokens, job: job.id, used: usage.promptTokens + usage.completionTokens, logger: logger)
                logger.info("chat job stopped", metadata: ["completion_tokens": "\(usage.completionTokens)"])
            }.value
        } catch {
            logger.error("a stopped job's answer and usage were not stored", metadata: ["error": "\(type(of: error))"])
        }
        throw CancellationError()
    }

    /// Runs a write to the job's row, waiting up to 10 s for the row (the API stores it while
    /// the job is already queued, so a quick worker can get here first) and up to 5 minutes for
    /// a database that is away: the answer is in hand, and the worker keeps the job's lease
    /// meanwhile, so it is stored once PostgreSQL is back instead of waiting for a retry.
    @discardableResult
    func whenStored<Result>(_ write: () async throws -> Result) async throws -> Result {
        let started = ContinuousClock.now
        var delay = Duration.milliseconds(2)
        while true {
            do {
                return try await write()
            } catch let error as StoreError where error.code == .jobNotStored && ContinuousClock.now + delay < started + .seconds(10) {
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(500))
            } catch where StoreError.isUnavailable(error) && ContinuousClock.now < started + .seconds(300) {
                logger.warning("the database is unavailable; the job's row is written when it is back")
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Runs `body` until it succeeds, at most five times, waiting 0.1, 0.2, 0.4 and 0.8 s between.
    static func persistently<Result>(_ body: () async throws -> Result) async throws -> Result {
        var delay = Duration.milliseconds(100)
        for _ in 1..<5 {
            do { return try await body() } catch { try await Task.sleep(for: delay) }
            delay *= 2
        }
        return try await body()
    }

    /// Records the failure in the store and returns it for the queue, which ends the job and
    /// tells the client (the job's `error` event).
    private func fail(_ job: ClaimedJob, code: String, message: String, logger: Logger) async throws -> JobFailure {
        logger.warning("chat job failed", metadata: ["code": "\(code)"])
        try await whenStored { try await store.failJob(job.id.uuid, reason: message, run: JobRun(job)) }
        return JobFailure(code: code, message, retry: .never)
    }
}

struct Diverged: Error {}

extension [ChatEvent] {
    /// The text of the token events.
    var streamedText: String {
        reduce(into: "") { text, event in if case .token(let t) = event { text += t } }
    }
}

extension ChatEvent {

    var usage: TokenUsage? {
        if case .done(_, let prompt, let completion) = self { return TokenUsage(promptTokens: prompt, completionTokens: completion) }
        return nil
    }
}

extension JobRun {
    /// A claimed job's attempt, started when it was claimed.
    init(_ job: ClaimedJob) {
        self.init(attempt: job.attempt, startedAt: Date(timeIntervalSince1970: Double(job.startedAt) / 1000))
    }
}

extension TokenBudget {
    /// Settles a job's reservation of the caller's tokens with the tokens used, once per job.
    /// A failure is logged, not thrown: the job's result matters more than the bookkeeping.
    func settle(buckets: [String: Int]?, reserved: Int?, job: JobID, used: Int, logger: Logger) async {
        guard let buckets, let reserved else { return }
        do {
            try await settle(
                reserved: reserved, used: used, in: buckets.map { Bucket(key: $0.key, perMinute: $0.value) }.sorted { $0.key < $1.key },
                once: job.rawValue)
        } catch {
            logger.warning("token reservation not settled", metadata: ["error": "\(error)"])
        }
    }
}
