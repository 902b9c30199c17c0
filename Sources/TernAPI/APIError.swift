import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernQueue

/// A deliberate error answer, in OpenAI's error format:
/// `{"error": {"message", "type", "param", "code"}}`, with a stable `code`.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var type: String
    public var code: String
    public var message: String
    public var param: String?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, type: String = "invalid_request_error", code: String, message: String, param: String? = nil) {
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(body))))
    }

    var body: Body { Body(error: .init(message: message, type: type, param: param, code: code)) }

    struct Body: Encodable {
        struct Detail: Encodable {
            let message: String
            let type: String
            let param: String?
            let code: String

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(message, forKey: .message)
                try container.encode(type, forKey: .type)
                try container.encode(param, forKey: .param)  // OpenAI sends an explicit null
                try container.encode(code, forKey: .code)
            }
            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        let error: Detail
    }

    static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(.badRequest, code: "invalid_request", message: message, param: param)
    }

    /// A 503 that asks the client to retry in 5 seconds: nothing was done.
    private static func tryAgainShortly(code: String, message: String) -> APIError {
        var error = APIError(.serviceUnavailable, type: "server_error", code: code, message: message)
        error.headers[.retryAfter] = "5"
        return error
    }

    /// Admission control: the queue is full; the request was refused before any work.
    static let queueFull = tryAgainShortly(code: "queue_full", message: "Too many requests are waiting; try again shortly.")

    /// PostgreSQL is away (stopped, restarting, unreachable): nothing was changed.
    static let databaseUnavailable = tryAgainShortly(code: "database_unavailable", message: "The database is unavailable; try again shortly.")

    /// Redis (the queue, limits and sessions) is away: nothing was changed.
    static let redisUnavailable = tryAgainShortly(code: "redis_unavailable", message: "The queue is unavailable; try again shortly.")

    /// A 429 for a refused rate limit, with `Retry-After` and the `RateLimit-*` headers.
    static func rateLimited(_ refusal: RateLimitRefusal, unit: String) -> APIError {
        let seconds = max(1, Int((Double(refusal.retryAfter.components.seconds) + Double(refusal.retryAfter.components.attoseconds) / 1e18).rounded(.up)))
        var error = APIError(.tooManyRequests, type: unit, code: unit == "tokens" ? "tokens_rate_limit_exceeded" : "rate_limit_exceeded",
                             message: "Rate limit of \(refusal.limit) \(unit) a minute reached; retry after \(seconds) s.")
        error.headers = RateLimitStatus(limit: refusal.limit, remaining: 0, resetSeconds: seconds).headers
        error.headers[.retryAfter] = String(seconds)
        return error
    }

    /// A 504: the job gave no answer within `limit` (it goes on; its events stay readable).
    static func noAnswer(within limit: Duration) -> APIError {
        APIError(.gatewayTimeout, type: "server_error", code: "timeout", message: "No answer within \(limit).")
    }

    static let cancelled = APIError(.conflict, code: "job_cancelled", message: "The job was cancelled before it finished.")

    static let jobNotFound = APIError(.notFound, code: "job_not_found", message: "No such job.")

    static let keyNotFound = APIError(.notFound, code: "key_not_found", message: "No such API key.")

    static let conversationNotFound = APIError(.notFound, code: "conversation_not_found", message: "No such conversation.")

    static let documentNotFound = APIError(.notFound, code: "document_not_found", message: "No such document.")

    static let noEmbeddingModel = APIError(
        .serviceUnavailable, type: "server_error", code: "no_embedding_model", message: "No embedding model is configured, so documents cannot be searched.")

    static let unauthorized = APIError(
        .unauthorized, code: "invalid_api_key",
        message: "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'.")
}
