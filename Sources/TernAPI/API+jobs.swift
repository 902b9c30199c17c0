import CoreMetrics
import Foundation
import Hummingbird
import Logging
import NIOCore
import TernAI
import TernQueue
import TernRedis
import TernStore

extension UserID {
    /// The queue tenant of the user's jobs.
    var tenant: String { description }
}

/// A job as the jobs API shows it.
struct JobObject: Encodable {
    struct Failure: Encodable {
        let message: String
    }

    let id: String
    var object = "job"
    let type: String
    /// queued, running, completed, failed or cancelled.
    let status: String
    let attempt: Int
    let created_at: Int64
    let started_at: Int64?
    let finished_at: Int64?
    let cancel_requested: Bool
    let error: Failure?
    let events_url: String

    init(_ status: JobStatus) {
        id = status.id.rawValue
        type = status.type == ChatJob.type ? "chat.completion" : status.type
        switch status.state {
        case .ready, .delayed: self.status = "queued"
        case .active: self.status = "running"
        case .completed, .failed, .cancelled: self.status = status.state.rawValue
        }
        attempt = status.attempt
        created_at = status.enqueuedAt / 1000
        started_at = status.startedAt.map { $0 / 1000 }
        finished_at = status.finishedAt.map { $0 / 1000 }
        cancel_requested = status.cancelRequested
        error = status.state == .failed ? status.error.map(Failure.init) : nil
        events_url = "/v1/jobs/\(status.id)/events"
    }
}

/// `POST /v1/jobs`: a chat completion to run in the background.
struct CreateJobRequest: JSONBody {
    let type: String
    let input: ChatCompletionRequest

    init(json: JSONObject) throws {
        type = try json.string("type")
        input = try ChatCompletionRequest(json: json.required(json.optionalObject("input"), "input"))
    }
}

extension API {
    func addJobRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/jobs") { request, _ in try await createJob(request) }
        router.get("/v1/jobs/:id") { request, context in
            let user = try await authenticate(request).user
            return try json(JobObject(try await ownedJob(context, user)))
        }
        router.post("/v1/jobs/:id/cancel") { request, context in
            let user = try await authenticate(request).user
            let job = try await ownedJob(context, user)
            // A waiting job ends here; a running one ends when its worker has stopped it and
            // recorded what it used.
            if try await queue.cancel(job.id) == .cancelled { try await store.cancelJob(job.id.uuid) }
            logger.info("job cancel requested", metadata: ["job": "\(job.id)", "user": "\(user)"])
            return try json(JobObject(try await ownedJob(context, user)))
        }
        router.get("/v1/jobs/:id/events") { request, context in
            let user = try await authenticate(request).user
            let job = try await ownedJob(context, user)
            return try jobEvents(job.id, after: try lastEventID(request))
        }
    }

    private func createJob(_ request: Request) async throws -> Response {
        let caller = try await identifyCounting(request, generatingOn: queue)
        let (id, conversation) = try await whileCounted(caller) {
            let body = try await decodeBody(CreateJobRequest.self, of: request, what: "job")
            guard body.type == "chat.completion" else {
                throw APIError.invalid("Unknown job type '\(body.type.prefix(100))'; the one type is 'chat.completion'.", param: "type")
            }
            return try await enqueueChat(body.input, for: caller)
        }
        logger.info("job enqueued", metadata: ["job": "\(id)", "user": "\(caller.user)"])
        guard let status = try await queue.status(id) else { throw APIError.jobNotFound }
        var headers: HTTPFields = [.location: "/v1/jobs/\(id)"]
        headers[.init("X-Tern-Conversation-Id")!] = conversation.uuidString.lowercased()
        return try json(JobObject(status), status: .accepted, headers: headers)
    }

    /// The job named in the path, if it is the caller's; another user's job is a 404 like a
    /// missing one, so ids cannot be probed.
    private func ownedJob(_ context: BasicRequestContext, _ user: UserID) async throws -> JobStatus {
        guard let text = context.parameters.get("id"), let id = JobID(text), let status = try await queue.status(id),
              status.tenant == user.tenant
        else { throw APIError.jobNotFound }
        return status
    }

    /// Where to resume: the `Last-Event-ID` header (or `?after=`), a stream entry id.
    private func lastEventID(_ request: Request) throws -> String {
        guard let value = request.headers[.init("Last-Event-ID")!] ?? request.uri.queryParameters.get("after") else { return "0" }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.allSatisfy(\.isASCII) && UInt64($0) != nil }) else {
            throw APIError.invalid("Last-Event-ID must be an event id such as 1733000000000-0.", param: "Last-Event-ID") }
        return value
    }

    /// The job's events as Server-Sent Events, each with its id, from after `lastID`, until the
    /// job ends. Any API instance can serve any part of it: the events live in Redis.
    private func jobEvents(_ job: JobID, after lastID: String) throws -> Response {
        let headers = HTTPFields.eventStream
        let deadline = ContinuousClock.now + configuration.answerTimeout
        return Response(status: .ok, headers: headers, body: .init { writer in
            OpenStreams.meter.increment()
            defer { OpenStreams.meter.decrement() }
            var ended = false
            do {
                try await events.follow(job, after: lastID, idle: .milliseconds(configuration.heartbeatMilliseconds)) { batch in
                    for event in batch {
                        var data = event.fields
                        data["type"] = nil
                        var text = "id: \(event.id)\nevent: \(event.type)\ndata: "
                        text += String(decoding: try JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]), as: UTF8.self)
                        text += "\n\n"
                        try await writer.write(ByteBuffer(string: text))
                        if ["completed", "error", "cancelled"].contains(event.type) { return false }
                    }
                    return true
                } onIdle: {
                    // A job that has ended has nothing more to send once its events were read
                    // after the end was seen (they are written with the final state).
                    if ended { return false }
                    let state = try await queue.status(job)?.state
                    ended = ContinuousClock.now >= deadline || [.completed, .failed, .cancelled, nil].contains(state)
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    return true
                }
            } catch is CancellationError {
                return
            } catch {
                // The status line is sent: end with an event that says so rather than a broken
                // stream (`stream_error`, not the job's own `error`: the job may be fine).
                logger.warning("job event stream failed", metadata: ["job": "\(job)", "error": "\(type(of: error))"])
                try? await writer.write(ByteBuffer(string: "event: stream_error\ndata: {\"code\":\"internal_error\",\"message\":\"The event stream failed; resume with Last-Event-ID.\"}\n\n"))
            }
            try await writer.finish(nil)
        })
    }
}
