import Hummingbird
import Logging
import TernRedis
import TernStore

/// Every error answer in OpenAI's format: the router's own (no such route, wrong method) get a
/// stable code, a database or Redis that is away a 503 (`database_unavailable`,
/// `redis_unavailable`), and an unexpected error becomes a logged 500 `internal_error` that
/// shows the client nothing of its cause.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as any HTTPResponseError {
            let code = switch error.status {
            case .notFound: "not_found"
            case .methodNotAllowed: "method_not_allowed"
            case .contentTooLarge: "body_too_large"
            default: error.status.code < 500 ? "invalid_request" : "internal_error"
            }
            throw APIError(error.status, type: error.status.code < 500 ? "invalid_request_error" : "server_error", code: code,
                           message: error.status.code == 404 ? "No such endpoint: \(request.method) \(request.uri.path.prefix(200))." : error.status.reasonPhrase)
        } catch is CancellationError {
            throw CancellationError()
        } catch where StoreError.isUnavailable(error) {
            logger.warning("database unavailable", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(type(of: error))"])
            throw APIError.databaseUnavailable
        } catch let error as RedisError where error.isUnavailable {
            logger.warning("redis unavailable", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(error.code)"])
            throw APIError.redisUnavailable
        } catch {
            // The error's type only: its text may quote SQL or the values of a row.
            logger.error("request failed", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(type(of: error))"])
            throw APIError(.internalServerError, type: "server_error", code: "internal_error", message: "Something went wrong on Tern's side.")
        }
    }
}
