import CoreMetrics
import Dispatch
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers

/// Requests by route template, method and status, their durations and the requests in progress:
/// the metrics of Hummingbird's `MetricsMiddleware`, under the same names. Unlike it, an answer
/// of a known size is counted once it is ready, not after it was written: wrapping such a body
/// would cost Hummingbird's single write of head, body and end (three writes, each a hop to the
/// connection's event loop, instead of one). A streamed answer is counted when it ends.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    private let metrics = RouteMetrics()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let active = metrics.active(request.method)
        active.increment()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            let route = metrics.route(context.endpointPath ?? "NotFound", request.method, status)
            route.requests.increment()
            route.errors.increment()
            active.decrement()
            throw error
        }
        let route = metrics.route(context.endpointPath ?? "Unknown", request.method, response.status)
        @Sendable func record() {
            route.requests.increment()
            route.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
            active.decrement()
        }
        if response.body.contentLength != nil {
            record()
        } else {
            let body = response.body
            response.body = ResponseBody { writer in
                defer { record() }
                try await body.write(writer)
            }
        }
        return response
    }
}

/// The metric objects per method and per route, made once: a metrics factory's lookup takes a lock.
private final class RouteMetrics: Sendable {
    struct Route: Sendable {
        let requests: Counter
        let duration: Timer
        let errors: Counter
    }
    private struct Key: Hashable {
        let route: String
        let method: HTTPRequest.Method
        let status: Int
    }
    private let routes = NIOLockedValueBox<[Key: Route]>([:])
    private let methods = NIOLockedValueBox<[HTTPRequest.Method: Meter]>([:])

    func active(_ method: HTTPRequest.Method) -> Meter {
        methods.withLockedValue { methods in
            if let meter = methods[method] { return meter }
            let meter = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)])
            methods[method] = meter
            return meter
        }
    }

    func route(_ route: String, _ method: HTTPRequest.Method, _ status: HTTPResponse.Status) -> Route {
        let key = Key(route: route, method: method, status: status.code)
        return routes.withLockedValue { routes in
            if let metrics = routes[key] { return metrics }
            let dimensions = [("http.route", route), ("http.request.method", method.rawValue), ("http.response.status_code", "\(status.code)")]
            let metrics = Route(
                requests: Counter(label: "hb.requests", dimensions: dimensions),
                duration: Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds),
                errors: Counter(
                    label: "hb.request.errors",
                    dimensions: [("http.route", route), ("http.request.method", method.rawValue), ("error.type", "\(status.code)")]))
            routes[key] = metrics
            return metrics
        }
    }
}
