import CoreMetrics
import Foundation
import Hummingbird
import Logging
import NIOCore
import TernAI
import TernQueue
import TernRedis
import TernStore

extension API {
    /// `POST /v1/chat/completions`: stores the conversation, enqueues a chat job and relays its
    /// events, as Server-Sent Events (`stream: true`) or as one JSON answer.
    func chatCompletions(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try await identifyCounting(request, generatingOn: queue)
        let (chat, (jobID, conversationID)) = try await whileCounted(caller) {
            let chat = try await decodeBody(ChatCompletionRequest.self, of: request, what: "chat completion request")
            return (chat, try await enqueueChat(chat, for: caller))
        }
        logger.info("chat job enqueued", metadata: [
            "job": "\(jobID)", "user": "\(caller.user)", "end_user": "\(chat.user ?? "")", "stream": "\(chat.stream ?? false)",
        ])

        let completion = CompletionFormat(id: "chatcmpl-\(jobID)", model: chat.model, created: Int(Date().timeIntervalSince1970))
        var headers: HTTPFields = [:]
        headers[.init("X-Tern-Job-Id")!] = jobID.rawValue
        headers[.init("X-Tern-Conversation-Id")!] = conversationID.uuidString.lowercased()
        if chat.stream == true {
            return streamResponse(job: jobID, format: completion, includeUsage: chat.stream_options?.include_usage == true, headers: headers)
        }
        return try await answerResponse(job: jobID, format: completion, headers: headers)
    }

    /// Reads a JSON body within the size limit; a body that is not `Body` is a 400.
    func decodeBody<Body: JSONBody>(_ type: Body.Type, of request: Request, what: String) async throws -> Body {
        let body = try await jsonBody(of: request)
        let failure: String
        do {
            let value = try body.withUnsafeReadableBytes { bytes throws(JSONReader.Malformed) in try JSONReader.read(bytes) }
            return try Body(json: JSONObject(value))
        } catch let error as APIError {
            throw error
        } catch let mismatch as JSONObject.Mismatch {
            failure = mismatch.missing ? "missing field '\(mismatch.path)'" : "wrong type at '\(mismatch.path)'"
        } catch {
            failure = "malformed JSON"
        }
        throw APIError.invalid("The body is not a valid \(what): \(failure)")
    }

    /// A request's body, which must be declared JSON (a cross-site form cannot send that
    /// without the browser asking first), within the size limit, and hold no NUL: PostgreSQL's
    /// text cannot, so no text field may. A zero byte is never in UTF-8 JSON (only in UTF-16
    /// or UTF-32, which are refused), so the escape is what is looked for.
    private func jsonBody(of request: Request) async throws -> ByteBuffer {
        guard let mediaType = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(),
              mediaType == "application/json"
        else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "Send the body as JSON, with 'Content-Type: application/json'.")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: configuration.limits.maximumBodyBytes)
        } catch {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "The request body is larger than \(configuration.limits.maximumBodyBytes) bytes.")
        }
        guard !body.readableBytesView.contains(0), !Self.containsEscapedNUL(body.readableBytesView) else {
            throw APIError.invalid("Text may not contain NUL characters (\\u0000).")
        }
        return body
    }

    /// Validates a chat request, reserves its tokens, stores its conversation and enqueues its job.
    func enqueueChat(_ chat: ChatCompletionRequest, for caller: Caller) async throws -> (JobID, UUID) {
        guard configuration.models.contains(chat.model) else {
            throw APIError(.notFound, code: "model_not_found", message: "The model '\(chat.model.prefix(100))' does not exist.", param: "model")
        }
        let (newMessages, options) = try chat.validated(limits: configuration.limits)
        if chat.documents != nil, configuration.embeddingModels.isEmpty { throw APIError.noEmbeddingModel }
        let user = caller.user
        var messages = newMessages
        if let conversation = chat.conversation {
            async let summary = store.conversation(conversation, of: user)
            async let stored = store.messages(conversation: conversation, user: user)
            guard try await summary != nil else { throw APIError.conversationNotFound }
            messages = Self.history(try await stored, fitting: configuration.limits, before: newMessages) + newMessages
        }
        // The estimate: about four characters a token, plus the longest answer allowed.
        let estimate = messages.estimatedTokens + (options.maxTokens ?? configuration.reservedCompletionTokens)
        // The job is made while the request's count (`identifyCounting`) is on its way.
        let jobID = JobID()
        let conversationID = chat.conversation ?? UUID()
        let buckets = tokenBuckets(of: caller)
        let job = ChatJob(
            userID: user.uuid, conversationID: conversationID, model: chat.model, messages: messages, options: options,
            tokenBuckets: buckets.limits, reservedTokens: estimate, documents: chat.documents?.ids)
        let newJob = NewJob(
            id: jobID, type: ChatJob.type, tenant: user.tenant, payload: job.payload, lane: .interactive, provider: chat.model,
            tokens: options.maxTokens ?? 0)
        return try await admitting(estimate, in: buckets, for: caller, on: queue) {
            // The rows are stored while the job is enqueued, off the way to the first token: a
            // worker that starts the job first waits for its row (ChatJobHandler.whenStored).
            async let stored: Void = storeChat(chat, newMessages, jobID: jobID, conversationID: conversationID, for: caller)
            do {
                _ = try await queue.enqueue(newJob)
            } catch {
                // Nothing will run: the row, if stored, records why.
                if (try? await stored) != nil {
                    try? await store.failJob(jobID.uuid, reason: error.isBacklogFull ? "the queue was full" : "the job was not enqueued")
                }
                throw error.isBacklogFull ? APIError.queueFull : error
            }
            do {
                _ = try await stored
            } catch {
                // A job without its rows must not run.
                _ = try? await queue.cancel(jobID)
                throw error
            }
            return (jobID, conversationID)
        }
    }

    /// Stores a chat's job with its messages: in a new conversation, or added to the caller's
    /// `chat.conversation` (a 404 if it is another user's).
    private func storeChat(_ chat: ChatCompletionRequest, _ messages: [ChatMessage], jobID: JobID, conversationID: UUID, for caller: Caller) async throws {
        do {
            try await store.createChat(
                user: caller.user, apiKey: caller.key, jobID: jobID.uuid, conversationID: conversationID, model: chat.model,
                title: String((messages.last { $0.role == "user" }?.content ?? "Chat").prefix(80)),
                messages: messages.map { StoredMessage(role: $0.role, content: $0.content) })
        } catch let error as StoreError where error.code == .notFound {
            throw APIError.conversationNotFound
        }
    }

    /// What of a conversation's stored messages goes before the new ones, oldest first, within
    /// `limits` together with them: its opening system messages (the instructions stay), then
    /// the newest others that fit. An answer stopped before its first piece is left out.
    static func history(_ stored: [StoredMessage], fitting limits: ChatLimits, before new: [ChatMessage]) -> [ChatMessage] {
        let messages = stored.filter { !$0.content.isEmpty }.map { ChatMessage(role: $0.role, content: $0.content) }
        let system = messages.prefix { $0.role == "system" }
        var count = new.count + system.count
        var characters = (new + system).reduce(0) { $0 + $1.content.count }
        guard count <= limits.maximumMessages, characters <= limits.maximumPromptCharacters else { return [] }
        var kept: [ChatMessage] = []
        for message in messages.dropFirst(system.count).reversed() {
            count += 1
            characters += message.content.count
            guard count <= limits.maximumMessages, characters <= limits.maximumPromptCharacters else { break }
            kept.append(message)
        }
        return system + kept.reversed()
    }

    /// Enqueues a job whose row is already stored; a full queue fails the row and answers 503.
    func enqueue(on queue: any JobQueue, _ job: NewJob) async throws {
        do {
            _ = try await queue.enqueue(job)
        } catch where error.isBacklogFull {
            try await store.failJob(job.id.uuid, reason: "the queue was full")
            throw APIError.queueFull
        }
    }

    /// Admits a generation of a caller from `identifyCounting`, three checks at once: the
    /// request's count against the caller's rate limits (already running), `queue`'s backlog (a
    /// 503 past the admission threshold) and a reservation of `tokens` of the caller's tokens a
    /// minute in `buckets` (the caller's, `tokenBuckets(of:)`; a 429 if they are spent). Then
    /// runs `body`, and gives the reservation back if anything fails: then nothing will run.
    func admitting<Result>(
        _ tokens: Int, in buckets: [TokenBudget.Bucket], for caller: Caller, on queue: any JobQueue, _ body: () async throws -> Result
    ) async throws -> Result {
        let budget = TokenBudget(redis: redis)
        let backlogCheck = caller.backlogCheck(on: queue) ?? startBacklogCheck(on: queue)
        do {
            try await budget.reserve(tokens, in: buckets)
        } catch let refusal as RateLimitRefusal {
            throw APIError.rateLimited(refusal, unit: "tokens")
        }
        do {
            try await caller.admitted()
            guard try await backlogCheck?.value ?? true else { throw APIError.queueFull }
            return try await body()
        } catch {
            try? await budget.settle(reserved: tokens, used: 0, in: buckets)
            throw error
        }
    }

    /// Starts finding out whether `queue`'s backlog is below the admission threshold; `nil`
    /// without a threshold.
    func startBacklogCheck(on queue: any JobQueue) -> Task<Bool, any Error>? {
        guard let threshold = configuration.admissionBacklog else { return nil }
        return Task { try await queue.backlog() < threshold }
    }

    /// The caller's tokens-a-minute buckets: the key's (if the request used one) and the user's.
    func tokenBuckets(of caller: Caller) -> [TokenBudget.Bucket] {
        var buckets: [TokenBudget.Bucket] = []
        if let key = caller.key, let perMinute = configuration.tokensPerMinutePerKey {
            buckets.append(.init(key: "tern:tokens:{\(caller.user)}:key:\(key.uuidString.lowercased())", perMinute: perMinute))
        }
        if let perMinute = configuration.tokensPerMinutePerUser {
            buckets.append(.init(key: "tern:tokens:{\(caller.user)}:user", perMinute: perMinute))
        }
        return buckets
    }

    private func streamResponse(job: JobID, format: CompletionFormat, includeUsage: Bool, headers: HTTPFields) -> Response {
        var headers = headers
        headers.append(contentsOf: HTTPFields.eventStream)
        let deadline = ContinuousClock.now + configuration.answerTimeout
        return Response(status: .ok, headers: headers, body: .init { writer in
            OpenStreams.meter.increment()
            defer { OpenStreams.meter.decrement() }
            try await writer.write(format.sse(format.chunk(delta: ["role": "assistant", "content": ""])))
            var citations: [Citation]?
            do {
                try await follow(job) { event in
                    switch event {
                    case .started: return true
                    case .sources(let sources):
                        citations = sources
                        return true
                    case .token(let text):
                        try await writer.write(format.tokenEvent(text))
                        return true
                    case .done(let reason, let prompt, let completion):
                        try await writer.write(format.sse(format.chunk(delta: [:], finishReason: reason, citations: citations)))
                        if includeUsage { try await writer.write(format.sse(format.usageChunk(prompt: prompt, completion: completion))) }
                        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                        return false
                    case .failed(let code, let message):
                        let error = APIError(.badGateway, type: "server_error", code: code, message: message)
                        try await writer.write(format.sse(error.body))
                        return false
                    case .cancelled:
                        try await writer.write(format.sse(APIError.cancelled.body))
                        return false
                    }
                } onIdle: {
                    guard ContinuousClock.now < deadline else {
                        // The job is still queued or stalled: end the stream instead of waiting forever.
                        // The job itself goes on; its events remain readable.
                        let error = APIError.noAnswer(within: configuration.answerTimeout)
                        try await writer.write(format.sse(error.body))
                        throw StreamTimedOut()
                    }
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                }
            } catch is StreamTimedOut {
            } catch is CancellationError {
                return
            } catch {
                // The status line is sent: end with an error chunk rather than a broken stream.
                logger.warning("chat stream failed", metadata: ["job": "\(job)", "error": "\(type(of: error))"])
                let failure = APIError(.internalServerError, type: "server_error", code: "stream_failed",
                                       message: "The stream failed; its job goes on (GET /v1/jobs/\(job)/events resumes it).")
                try? await writer.write(format.sse(failure.body))
            }
            try await writer.finish(nil)
        })
    }

    /// Open Server-Sent Event streams (`tern_open_streams` in /metrics).
    enum OpenStreams {
        static let meter = Meter(label: "tern_open_streams")
    }

    /// Ends a stream whose job gave no answer in time.
    struct StreamTimedOut: Error {}

    private func answerResponse(job: JobID, format: CompletionFormat, headers: HTTPFields) async throws -> Response {
        var answer = ""
        var citations: [Citation]?
        var outcome: ChatEvent?
        let deadline = ContinuousClock.now + configuration.answerTimeout
        try await follow(job) { event in
            switch event {
            case .started: return true
            case .sources(let sources):
                citations = sources
                return true
            case .token(let text):
                answer += text
                return true
            case .done, .failed, .cancelled:
                outcome = event
                return false
            }
        } onIdle: {
            if ContinuousClock.now > deadline {
                throw APIError.noAnswer(within: configuration.answerTimeout)
            }
        }
        switch outcome {
        case .done(let reason, let prompt, let completion):
            return try json(format.completion(answer: answer, finishReason: reason, prompt: prompt, completion: completion, citations: citations), headers: headers)
        case .failed(let code, let message):
            throw APIError(.badGateway, type: "server_error", code: code, message: message)
        case .cancelled:
            throw APIError.cancelled
        default:
            throw APIError(.internalServerError, type: "server_error", code: "internal_error", message: "The job ended without an answer.")
        }
    }

    /// Reads a job's chat events from the start, in order, until `onEvent` returns `false`.
    /// `onIdle` runs whenever no event came within the heartbeat interval.
    func follow(
        _ job: JobID,
        onEvent: (ChatEvent) async throws -> Bool,
        onIdle: () async throws -> Void
    ) async throws {
        try await followEntries(job, in: events, onEntry: { entry in
            guard let event = ChatEvent(fields: entry.fields) else { return true }
            return try await onEvent(event)
        }, onIdle: onIdle)
    }

    /// Reads a job's event entries from the start, in order, until `onEntry` returns `false`.
    func followEntries(
        _ job: JobID, in events: JobEvents,
        onEntry: (JobEvent) async throws -> Bool,
        onIdle: () async throws -> Void
    ) async throws {
        try await events.follow(job, after: "0", idle: .milliseconds(configuration.heartbeatMilliseconds)) { batch in
            for entry in batch where try await !onEntry(entry) { return false }
            return true
        } onIdle: {
            try await onIdle()
            return true
        }
    }

    /// Whether JSON text holds the escape `\u0000` (and not an escaped backslash before `u0000`).
    static func containsEscapedNUL(_ bytes: ByteBufferView) -> Bool {
        var backslashes = 0
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                backslashes += 1
            } else {
                if backslashes % 2 == 1, byte == UInt8(ascii: "u"), bytes.distance(from: index, to: bytes.endIndex) >= 5,
                   bytes[bytes.index(index, offsetBy: 1)...bytes.index(index, offsetBy: 4)].allSatisfy({ $0 == UInt8(ascii: "0") }) {
                    return true
                }
                backslashes = 0
            }
            index = bytes.index(after: index)
        }
        return false
    }
}

extension [TokenBudget.Bucket] {
    /// Tokens a minute by bucket key, as a job's payload carries them.
    var limits: [String: Int] { Dictionary(uniqueKeysWithValues: map { ($0.key, $0.perMinute) }) }
}

extension Error {
    /// Whether this is the queue's refusal of a job past its maximum backlog.
    var isBacklogFull: Bool { (self as? JobQueueError)?.code == .backlogFull }
}
