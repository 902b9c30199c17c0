import Foundation
import Logging
import ServiceLifecycle
import TernAI
import TernQueue
import TernRedis
import TernStore

/// Takes chat jobs off the queue, streams the model's answer into each job's event stream,
/// stores the answer, and acknowledges the job. Runs `concurrency` jobs at a time.
public struct ChatWorker: Service {
    /// How a worker runs.
    public struct Configuration: Sendable {
        /// A name unique to this process; job leases are held under it.
        public var name: String = "worker-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        /// Jobs processed at the same time by this process.
        public var concurrency: Int = 4
        /// How long one claim call waits on the server before checking for shutdown.
        public var claimBlock: Duration = .seconds(2)
        /// Deliveries of one job before it is failed (a job whose worker keeps dying, or that
        /// keeps failing for a reason that is not the model's, must not run forever).
        public var maximumAttempts: Int = 3
        public init() {}
    }

    let configuration: Configuration
    let queue: JobQueue
    let events: JobEvents
    let store: Store
    let provider: OpenAIProvider
    let logger: Logger

    public init(configuration: Configuration, queue: JobQueue, events: JobEvents, store: Store, provider: OpenAIProvider, logger: Logger) {
        self.configuration = configuration
        self.queue = queue
        self.events = events
        self.store = store
        self.provider = provider
        self.logger = logger
    }

    /// Claims and processes jobs until graceful shutdown; a job in progress finishes first.
    public func run() async throws {
        try await queue.prepare()
        logger.info("worker started", metadata: ["worker": "\(configuration.name)", "queue": "\(queue.name)"])
        await withDiscardingTaskGroup { group in
            for slot in 0..<configuration.concurrency {
                group.addTask { await loop(consumer: "\(configuration.name)/\(slot)") }
            }
        }
        logger.info("worker stopped", metadata: ["worker": "\(configuration.name)"])
    }

    private func loop(consumer: String) async {
        var failures = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                guard let job = try await queue.claim(consumer: consumer, block: configuration.claimBlock) else { continue }
                failures = 0
                await process(job, consumer: consumer)
            } catch {
                // Redis or Postgres unavailable: back off (capped) and try again, never exit.
                failures += 1
                logger.warning("claim failed", metadata: ["error": "\(error)", "consecutive": "\(failures)"])
                try? await Task.sleep(for: .milliseconds(min(5000, 100 << min(failures, 6))))
            }
        }
    }

    /// Runs one job while renewing its lease; if the lease is lost, stops without acknowledging.
    func process(_ job: ClaimedJob, consumer: String) async {
        var jobLogger = logger
        jobLogger[metadataKey: "job"] = "\(job.id)"
        jobLogger[metadataKey: "attempt"] = "\(job.attempt)"
        let logger = jobLogger
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await renewLease(job, consumer: consumer) }
                group.addTask { try await generate(job, logger: logger) }
                try await group.next()
                group.cancelAll()
            }
            try await queue.acknowledge(job, consumer: consumer)
        } catch is LeaseLost {
            logger.warning("lease lost; another worker has the job")
        } catch {
            // The job stays unacknowledged and is delivered again when its lease expires.
            logger.error("job processing failed, will be retried", metadata: ["error": "\(error)"])
        }
    }

    private func renewLease(_ job: ClaimedJob, consumer: String) async throws {
        while true {
            try await Task.sleep(for: queue.lease / 3)
            guard try await queue.renew(job, consumer: consumer) else { throw LeaseLost() }
        }
    }

    private func generate(_ job: ClaimedJob, logger: Logger) async throws {
        guard job.type == ChatJob.type, let chat = try? JSONDecoder().decode(ChatJob.self, from: Data(job.payload.utf8)) else {
            logger.error("job payload is not a chat job")
            try await events.append(job.id, ChatEvent.failed(code: "invalid_job", message: "the job could not be read").fields)
            try await store.failJob(job.id.uuid, reason: "invalid job payload")
            return
        }
        let earlier = try await events.all(job.id).compactMap { ChatEvent(fields: $0.fields) }
        let streamedSoFar = earlier.reduce(into: "") { text, event in if case .token(let t) = event { text += t } }
        if let usage = earlier.lazy.compactMap(\.usage).first {
            // An earlier attempt finished but died before acknowledging: finish the bookkeeping.
            try await store.completeChatJob(job.id.uuid, answer: streamedSoFar, model: chat.model, usage: usage)
            return
        }
        if earlier.contains(where: \.isFailure) { return }  // already reported to the client
        guard job.attempt <= configuration.maximumAttempts else {
            try await fail(job, code: "retries_exhausted", message: "the job failed \(configuration.maximumAttempts) times and was given up", logger: logger)
            return
        }
        try await store.startJob(job.id.uuid, attempt: job.attempt)
        try await events.append(job.id, ChatEvent.started(attempt: job.attempt).fields)

        // A retried job must not repeat what clients already received: text the earlier attempt
        // streamed is skipped while the new answer matches it, and a divergent answer fails the
        // job rather than show the client a spliced answer.
        var answer = ""
        var finish = (reason: "stop", promptTokens: 0, completionTokens: 0)
        var completionPieces = 0
        do {
            for try await part in provider.streamChat(messages: chat.messages, options: chat.options) {
                switch part {
                case .text(let text):
                    completionPieces += 1
                    let before = answer.utf8.count
                    let seen = streamedSoFar.utf8.count
                    answer += text
                    if answer.utf8.count <= seen {
                        guard streamedSoFar.utf8.starts(with: answer.utf8) else { throw Diverged() }
                        continue
                    }
                    if before < seen {
                        guard answer.utf8.starts(with: streamedSoFar.utf8) else { throw Diverged() }
                    }
                    // `answer` starts with `streamedSoFar`, so this cut is on a character boundary.
                    let newText = String(decoding: answer.utf8.dropFirst(max(before, seen)), as: UTF8.self)
                    try await events.append(job.id, ChatEvent.token(newText).fields)
                case .finished(let reason, let prompt, let completion):
                    finish = (reason, prompt ?? 0, completion ?? completionPieces)
                }
            }
        } catch is Diverged {
            try await fail(job, code: "interrupted", message: "the model was interrupted mid-answer and could not resume it", logger: logger)
            return
        } catch let error as ProviderError {
            logger.warning("model call failed", metadata: ["error": "\(error.message)"])
            try await fail(job, code: "upstream_error", message: error.publicMessage, logger: logger)
            return
        }
        // The event first: if the worker dies before storing, the next attempt finds `done` and
        // stores what was streamed, rather than generating (and perhaps diverging) again.
        let usage = TokenUsage(promptTokens: finish.promptTokens, completionTokens: finish.completionTokens)
        try await events.append(job.id, ChatEvent.done(finishReason: finish.reason, promptTokens: usage.promptTokens, completionTokens: usage.completionTokens).fields)
        try await store.completeChatJob(job.id.uuid, answer: answer, model: chat.model, usage: usage)
        logger.info("chat job completed", metadata: ["completion_tokens": "\(usage.completionTokens)"])
    }

    private func fail(_ job: ClaimedJob, code: String, message: String, logger: Logger) async throws {
        logger.warning("chat job failed", metadata: ["code": "\(code)"])
        try await store.failJob(job.id.uuid, reason: message)
        try await events.append(job.id, ChatEvent.failed(code: code, message: message).fields)
    }
}

struct LeaseLost: Error {}
struct Diverged: Error {}

extension ChatEvent {
    var isFailure: Bool {
        if case .failed = self { return true }
        return false
    }

    var usage: TokenUsage? {
        if case .done(_, let prompt, let completion) = self { return TokenUsage(promptTokens: prompt, completionTokens: completion) }
        return nil
    }
}
