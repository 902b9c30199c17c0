import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus
import TernAI
import TernQueue
import TernRedis
import TernStore

/// The API layer: authenticates, validates, turns requests into jobs and relays job events.
/// It never calls a model itself.
public struct API: Sendable {
    /// How the API behaves.
    public struct Configuration: Sendable {
        /// Address to listen on.
        public var host = "127.0.0.1"
        /// Port to listen on.
        public var port = 8080
        /// The public names of the models clients may ask for.
        public var models: [String] = ["smollm2-135m"]
        /// The public names of the embedding models; none unless an embedding upstream is configured.
        public var embeddingModels: [String] = []
        /// Request limits.
        public var limits = ChatLimits()
        /// Longest wait for a job's next event before a stream gets a heartbeat comment.
        public var heartbeatMilliseconds = 10_000
        /// Longest a non-streaming request waits for its answer.
        public var answerTimeout: Duration = .seconds(600)
        /// The bearer token `GET /metrics` requires; `nil` turns the endpoint off.
        public var metricsToken: String?
        /// Requests a minute one API key may make, across all API instances; `nil`: no limit.
        public var requestsPerMinutePerKey: Int? = 600
        /// Requests a minute one user may make with all their keys; `nil`: no limit.
        public var requestsPerMinutePerUser: Int? = 1200
        /// Tokens (prompt and answer) a minute one API key may use, across all API instances;
        /// `nil`: no limit. A request reserves its estimate; the worker settles the real count.
        public var tokensPerMinutePerKey: Int? = 200_000
        /// Tokens a minute one user may use with all their keys and sessions; `nil`: no limit.
        public var tokensPerMinutePerUser: Int? = 400_000
        /// Answer tokens reserved for a request that sets no `max_tokens`.
        public var reservedCompletionTokens = 256
        /// Requests allowed back to back before the per-minute pace applies.
        public var rateLimitBurst = 60
        /// Waiting jobs past which new generations are refused at once (503 with `Retry-After`),
        /// before any work is done for them; other endpoints are not affected. `nil`: no check
        /// (the queue's own maximum backlog still applies).
        public var admissionBacklog: Int? = 8_000
        /// Whether anyone may sign up (`POST /v1/auth/signup`); off: 403 `signup_closed`.
        public var allowSignup = true
        /// bcrypt's cost factor for new passwords (each step doubles the work).
        public var bcryptCost: UInt8 = 12
        /// How long a browser session lasts, in seconds.
        public var sessionLifetimeSeconds = 7 * 86400
        /// Whether session cookies are `Secure` (sent over HTTPS only): on behind TLS.
        public var secureCookies = false
        /// Failed log-ins after which an account refuses log-ins for the rest of the window.
        public var maximumLoginFailures = 10
        /// The window of failed log-ins, in seconds from the first failure.
        public var loginLockoutSeconds = 900
        public init() {}
    }

    let configuration: Configuration
    let store: Store
    let redis: RedisClient
    let queue: any JobQueue
    let events: JobEvents
    /// Where embedding jobs go (workers claim them in batches), and their events.
    let embeddingQueue: any JobQueue
    let embeddingEvents: JobEvents
    /// This process's own metrics (requests, ...), served after the queue's by `/metrics`.
    let processMetrics: PrometheusCollectorRegistry?
    /// API keys looked up lately, so most requests skip PostgreSQL.
    let keyCache = APIKeyCache()
    let logger: Logger

    public init(
        configuration: Configuration, store: Store, redis: RedisClient, queue: any JobQueue, events: JobEvents,
        processMetrics: PrometheusCollectorRegistry? = nil, logger: Logger,
        embeddingQueue: (any JobQueue)? = nil, embeddingEvents: JobEvents? = nil
    ) {
        self.configuration = configuration
        self.store = store
        self.redis = redis
        self.queue = queue
        self.events = events
        self.embeddingQueue = embeddingQueue ?? queue
        self.embeddingEvents = embeddingEvents ?? events
        self.processMetrics = processMetrics
        var logger = logger
        logger.handler.metadataProvider = RequestScope.metadataProvider
        self.logger = logger
    }

    /// The routes of the whole API, web UI included.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: SecurityHeadersMiddleware())
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: RequestScopeMiddleware())
        router.add(middleware: ErrorMiddleware(logger: logger))
        router.get("/healthz") { _, _ in try await health() }
        router.get("/metrics") { request, _ in try await metrics(request) }
        router.get("/v1/models") { request, _ in
            _ = try await authenticate(request)
            return try json(ModelList(
                data: configuration.models.map { .init(id: $0, kind: "chat") } + configuration.embeddingModels.map { .init(id: $0, kind: "embedding") }))
        }
        router.post("/v1/chat/completions") { request, context in
            try await chatCompletions(request, context: context)
        }
        addEmbeddingRoutes(to: router)
        addAccountRoutes(to: router)
        addJobRoutes(to: router)
        addKeyRoutes(to: router)
        addUsageRoutes(to: router)
        addConversationRoutes(to: router)
        addDocumentRoutes(to: router)
        WebAssets.add(to: router)
        OpenAPIDocument.add(to: router, chatModels: configuration.models, embeddingModels: configuration.embeddingModels)
        return router
    }

    /// The Hummingbird application serving `router()`.
    public func application() -> some ApplicationProtocol {
        Application(
            router: router(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tern"),
            logger: logger
        )
    }

    func health() async throws -> Response {
        do {
            try await redis.send("PING")
            try await store.ping()
        } catch {
            logger.warning("health check failed", metadata: ["error": "\(error)"])
            throw APIError(.serviceUnavailable, type: "server_error", code: "unhealthy", message: "Redis or PostgreSQL is unavailable.")
        }
        return try json(["status": "ok"])
    }

    /// The queues' stats (chat and embeddings) and this process's metrics for Prometheus, for
    /// holders of the metrics token.
    func metrics(_ request: Request) async throws -> Response {
        guard let token = configuration.metricsToken else {
            throw APIError(.notFound, code: "not_found", message: "Metrics are not enabled (TERN_METRICS_TOKEN).")
        }
        guard request.carriesBearer(token) else { throw APIError.unauthorized }
        var queues = [(name: queue.name, stats: try await queue.stats())]
        if embeddingQueue.name != queue.name { queues.append((embeddingQueue.name, try await embeddingQueue.stats())) }
        let text = QueueStats.prometheusText(queues) + (processMetrics?.emitToString() ?? "")
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Who is calling, from an API key (`Authorization: Bearer`) or a session cookie, whose
    /// writes must carry the session's CSRF token (`X-CSRF-Token`). Counts the request against
    /// the key's and the user's rate limits (a 429 with `Retry-After` past them).
    func authenticate(_ request: Request) async throws -> Caller {
        let caller = try await identify(request)
        try await admit(caller)
        return caller
    }

    /// Who is calling, with the request being counted against their rate limits meanwhile: a
    /// generation reads and checks its body and its other limits while the count runs. Every
    /// path awaits the count (`admitting`, `whileCounted`), so a refused request is refused.
    /// A generation for `queue` has that queue's backlog checked meanwhile too (`admitting`).
    func identifyCounting(_ request: Request, generatingOn queue: (any JobQueue)? = nil) async throws -> Caller {
        var caller = try await identify(request)
        let counted = caller
        caller.admission = Task { try await admit(counted) }
        if let queue, let check = startBacklogCheck(on: queue) { caller.backlog = (queue.name, check) }
        return caller
    }

    /// Runs `body` for a caller from `identifyCounting`; if it fails, the request's count is
    /// awaited first, so a request past its limits gets its 429 whatever else was wrong.
    func whileCounted<Result>(_ caller: Caller, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await body()
        } catch {
            try await caller.admitted()
            throw error
        }
    }

    /// Who is calling, without counting the request (`admit` does).
    func identify(_ request: Request) async throws -> Caller {
        if let header = request.headers[.authorization] {
            guard header.hasPrefix("Bearer ") else { throw APIError.unauthorized }
            let secret = String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
            guard let (key, cached) = try await apiKey(secret) else { throw APIError.unauthorized }
            return Caller(user: key.user, key: key.id, revocationMarker: cached ? APIKeyCache.revocationMarker(user: key.user, key: key.id) : nil)
        }
        if let token = request.cookies[SessionStore.cookieName]?.value, let session = try await sessions.find(token) {
            if ![.get, .head].contains(request.method) {
                guard let given = request.headers[.init("X-CSRF-Token")!], constantTimeEqual(given, session.csrfToken) else {
                    throw APIError(.forbidden, code: "csrf_token_invalid", message: "Send the session's CSRF token as 'X-CSRF-Token'.")
                }
            }
            return Caller(user: session.user, key: nil)
        }
        throw APIError.unauthorized
    }

    /// Counts a request against the caller's rate limits (a 429 past them) and, for a key
    /// taken from the cache, checks in the same round trip that it was not revoked (a 401).
    func admit(_ caller: Caller) async throws {
        let limiter = RateLimiter(
            redis: redis,
            perKey: .init(perMinute: configuration.requestsPerMinutePerKey, burst: configuration.rateLimitBurst),
            perUser: .init(perMinute: configuration.requestsPerMinutePerUser, burst: configuration.rateLimitBurst))
        do {
            RequestScope.current?.record(try await limiter.admit(key: caller.key, user: caller.user.tenant, revocationMarker: caller.revocationMarker))
        } catch let refusal as RateLimitRefusal {
            throw APIError.rateLimited(refusal, unit: "requests")
        } catch is KeyRevoked {
            if let key = caller.key { keyCache.remove(id: key) }
            throw APIError.unauthorized
        }
    }

    /// The API key with this secret, from the cache (`cached`) or from PostgreSQL.
    private func apiKey(_ secret: String) async throws -> (key: APIKeyCache.Key, cached: Bool)? {
        let hash = sha256Hex(secret)
        if let key = keyCache.key(hash: hash) { return (key, true) }
        let asked = ContinuousClock.now
        guard let found = try await store.apiKey(secret) else { return nil }
        let key = APIKeyCache.Key(id: found.id, user: found.user)
        keyCache.insert(key, hash: hash, lookedUp: asked)
        return (key, false)
    }
}

/// Who made a request: the user, and the API key if one was used (not for a browser session).
struct Caller: Sendable {
    let user: UserID
    let key: UUID?
    /// For a key taken from `APIKeyCache`: the marker that says it was revoked since.
    var revocationMarker: String?
    /// The count of the request against the caller's limits, if it runs in the background.
    var admission: Task<Void, any Error>?

    /// The check of a generation queue's backlog started with the count, if any.
    var backlog: (queue: QueueName, check: Task<Bool, any Error>)?

    /// Waits for the request's count (`API.identifyCounting`); throws its refusal.
    func admitted() async throws {
        try await admission?.value
    }

    /// The backlog check started with the count, if it was for `queue`.
    func backlogCheck(on queue: any JobQueue) -> Task<Bool, any Error>? {
        guard let backlog, backlog.queue == queue.name else { return nil }
        return backlog.check
    }
}

struct ModelList: Encodable {
    struct Model: Encodable {
        let id: String
        var object = "model"
        var created = 0
        var owned_by = "tern"
        /// What the model does (a Tern extension): "chat" or "embedding".
        let kind: String
    }
    var object = "list"
    let data: [Model]
}

func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
    var headers = headers
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value))))
}

extension HTTPFields {
    /// Headers of a Server-Sent Events answer: not cached, not buffered by proxies.
    static var eventStream: HTTPFields {
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[.init("X-Accel-Buffering")!] = "no"
        return headers
    }
}

/// Headers every response carries.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.init("Referrer-Policy")!] = "no-referrer"
        return response
    }
}

extension Request {
    /// Whether the request's `Authorization` is `Bearer <token>`, compared without an early exit
    /// so the time taken does not reveal how much of a guess matched.
    public func carriesBearer(_ token: String) -> Bool {
        constantTimeEqual(headers[.authorization] ?? "", "Bearer \(token)")
    }
}

/// Whether two secrets are equal, compared without an early exit.
func constantTimeEqual(_ given: String, _ expected: String) -> Bool {
    let given = Array(given.utf8), expected = Array(expected.utf8)
    guard given.count == expected.count else { return false }
    return zip(given, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
}
