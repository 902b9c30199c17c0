import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers

/// What one request carries through its task: its id (in every log line the API writes while
/// serving it, and in the `X-Request-Id` answer header) and the rate limit state `authenticate`
/// found, which becomes the `RateLimit-*` headers of the answer. A task-local, because handlers
/// and the helpers they call cannot reach the response's headers or the log's metadata otherwise.
final class RequestScope: Sendable {
    @TaskLocal static var current: RequestScope?

    let id: String
    private let rateLimit = NIOLockedValueBox<RateLimitStatus?>(nil)

    init(id: String) { self.id = id }

    func record(_ status: RateLimitStatus?) { rateLimit.withLockedValue { $0 = status } }
    var rateLimitStatus: RateLimitStatus? { rateLimit.withLockedValue { $0 } }

    /// Log metadata: the current request's id.
    static let metadataProvider = Logger.MetadataProvider {
        current.map { ["request_id": "\($0.id)"] } ?? [:]
    }

    /// The caller's `X-Request-Id` if it is a plain token of at most 64 characters, else a new one.
    static func id(for request: Request) -> String {
        if let given = request.headers[.requestID], (1...64).contains(given.utf8.count), given.utf8.allSatisfy(isTokenByte) {
            return given
        }
        return String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }
}

/// A letter, digit, `-` or `_`.
private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
         UInt8(ascii: "-"), UInt8(ascii: "_"): true
    default: false
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}

/// Gives each request its scope, and its answer the `X-Request-Id` and `RateLimit-*` headers.
struct RequestScopeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let scope = RequestScope(id: RequestScope.id(for: request))
        do {
            var response = try await RequestScope.$current.withValue(scope) { try await next(request, context) }
            response.headers[.requestID] = scope.id
            if let status = scope.rateLimitStatus {
                for field in status.headers where response.headers[field.name] == nil { response.headers.append(field) }
            }
            return response
        } catch var error as APIError {
            error.headers[.requestID] = scope.id
            throw error
        }
    }
}
