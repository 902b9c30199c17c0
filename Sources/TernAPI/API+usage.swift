import Foundation
import Hummingbird
import TernStore

struct UsageList: Encodable {
    var object = "list"
    let data: [UsageRow]
}

extension API {
    /// `GET /v1/usage?days=N&api_key=ID`: the caller's tokens per day (UTC) and model, the last
    /// N days (30); with `api_key`, only those of requests made with that key of the caller's.
    func addUsageRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/usage") { request, _ in
            let user = try await authenticate(request).user
            let days = request.uri.queryParameters.get("days").map { Int($0) } ?? 30
            guard let days, (1...366).contains(days) else { throw APIError.invalid("days must be 1 to 366.", param: "days") }
            let key = request.uri.queryParameters.get("api_key").map { UUID(uuidString: $0) }
            if let key, key == nil { throw APIError.invalid("api_key must be the id of an API key.", param: "api_key") }
            let since = Date(timeIntervalSinceNow: -Double(days) * 86400)
            return try json(UsageList(data: try await store.usage(of: user, since: since, apiKey: key ?? nil)))
        }
    }
}
