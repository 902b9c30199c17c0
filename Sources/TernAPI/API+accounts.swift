import Foundation
import Hummingbird
import HummingbirdBcrypt
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TernAI
import TernRedis
import TernStore

/// The body of sign-up and log-in.
struct CredentialsRequest: JSONBody {
    let email: String
    let password: String

    init(json: JSONObject) throws {
        email = try json.string("email")
        password = try json.string("password")
    }
}

/// A signed-in session as the accounts API shows it (never the session token: that is in the
/// HttpOnly cookie).
struct SessionObject: Encodable {
    struct User: Encodable {
        let id: String
        let email: String
    }
    var object = "session"
    let user: User
    /// Send it as `X-CSRF-Token` with every cookie-authenticated write.
    let csrf_token: String
}

extension API {
    /// Accounts: `POST /v1/auth/signup`, `POST /v1/auth/login`, `POST /v1/auth/logout`,
    /// `GET /v1/auth/session`. Passwords are bcrypt-hashed off the event loops.
    func addAccountRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/auth/signup") { request, _ in
            guard configuration.allowSignup else {
                throw APIError(.forbidden, code: "signup_closed", message: "Sign-up is closed on this server.")
            }
            let (email, password) = try await credentials(request, checkStrength: true)
            let hash = try await PasswordHashing.run { Bcrypt.hash(password, cost: configuration.bcryptCost) }
            guard let user = try await store.createUser(email: email, passwordHash: hash) else {
                throw APIError(.conflict, code: "email_taken", message: "An account with this e-mail already exists.", param: "email")
            }
            logger.info("account created", metadata: ["user": "\(user)"])
            return try await startSession(user, email: email, status: .created)
        }
        router.post("/v1/auth/login") { request, _ in
            let (email, password) = try await credentials(request, checkStrength: false)
            // Counted before the password is checked, so parallel guesses are counted too.
            let attempts = LoginAttempts(redis: redis, email: email, window: configuration.loginLockoutSeconds)
            let (count, secondsLeft) = try await attempts.count()
            if count > configuration.maximumLoginFailures {
                var error = APIError(.tooManyRequests, type: "requests", code: "too_many_login_attempts",
                                     message: "Too many failed log-ins for this account; try again later.")
                error.headers[.retryAfter] = String(max(1, secondsLeft))
                throw error
            }
            let account = try await store.credentials(email: email)
            // An unknown e-mail costs a hash too, so timing does not tell which accounts exist.
            let matches = try await PasswordHashing.run {
                guard let hash = account?.passwordHash else {
                    _ = Bcrypt.hash(password, cost: configuration.bcryptCost)
                    return false
                }
                return Bcrypt.verify(password, hash: hash)
            }
            guard matches, let user = account?.user else {
                logger.info("log-in refused")
                throw APIError(.unauthorized, code: "invalid_credentials", message: "Wrong e-mail or password.")
            }
            try await attempts.clear()
            logger.info("logged in", metadata: ["user": "\(user)"])
            return try await startSession(user, email: email, status: .ok)
        }
        router.post("/v1/auth/logout") { request, _ in
            _ = try await authenticate(request)
            if let token = request.cookies[SessionStore.cookieName]?.value { try await sessions.delete(token) }
            var response = Response(status: .noContent)
            response.setCookie(sessionCookie("", maxAge: 0))
            return response
        }
        router.get("/v1/auth/session") { request, _ in
            guard let token = request.cookies[SessionStore.cookieName]?.value, let session = try await sessions.find(token),
                  let email = try await store.email(of: session.user)
            else { throw APIError(.unauthorized, code: "not_signed_in", message: "Not signed in.") }
            return try json(SessionObject(user: .init(id: "\(session.user)", email: email), csrf_token: session.csrfToken))
        }
    }

    var sessions: SessionStore { SessionStore(redis: redis, lifetime: configuration.sessionLifetimeSeconds) }

    /// The e-mail (trimmed, lower-cased) and password of a sign-up or log-in, checked.
    private func credentials(_ request: Request, checkStrength: Bool) async throws -> (String, String) {
        let body = try await decodeBody(CredentialsRequest.self, of: request, what: "credentials object")
        let email = body.email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.utf8.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
              !email.contains(where: { $0.isWhitespace })
        else { throw APIError.invalid("'email' must be an e-mail address.", param: "email") }
        // bcrypt reads at most 72 bytes; a longer password would be silently cut.
        guard body.password.utf8.count <= 72 else { throw APIError.invalid("'password' may hold at most 72 bytes.", param: "password") }
        if checkStrength, body.password.count < 8 {
            throw APIError.invalid("'password' must hold at least 8 characters.", param: "password")
        }
        return (email, body.password)
    }

    private func startSession(_ user: UserID, email: String, status: HTTPResponse.Status) async throws -> Response {
        let (token, session) = try await sessions.create(for: user)
        var response = try json(SessionObject(user: .init(id: "\(user)", email: email), csrf_token: session.csrfToken), status: status)
        response.setCookie(sessionCookie(token, maxAge: configuration.sessionLifetimeSeconds))
        return response
    }

    private func sessionCookie(_ value: String, maxAge: Int) -> Cookie {
        Cookie(name: SessionStore.cookieName, value: value, maxAge: maxAge, path: "/",
               secure: configuration.secureCookies, httpOnly: true, sameSite: .lax)
    }
}

/// Log-in attempts per account in a window that starts with the first one, in Redis so every API
/// instance counts together; a successful log-in clears the count.
struct LoginAttempts: Sendable {
    let redis: RedisClient
    let email: String
    /// Seconds the count lasts after the first attempt.
    let window: Int

    private var key: String { "tern:login-attempts:\(sha256Hex(email))" }

    /// Counts an attempt; returns the attempts in the window so far and the seconds it has left.
    func count() async throws -> (Int, Int) {
        let reply = try await redis.run(Self.script, keys: [key], arguments: [window])
        guard let values = reply.array?.compactMap(\.int), values.count == 2 else {
            throw RedisError(.unexpectedReply, "login attempts returned an unexpected reply")
        }
        return (Int(values[0]), Int(values[1]))
    }

    func clear() async throws { _ = try await redis.delete([key]) }

    /// KEYS the count; ARGV the window in seconds. The window is set whenever the count has none,
    /// so it can never outlive it.
    static let script = RedisScript("""
        local n = redis.call('INCR', KEYS[1])
        local ttl = redis.call('TTL', KEYS[1])
        if ttl < 0 then
          redis.call('EXPIRE', KEYS[1], ARGV[1])
          ttl = tonumber(ARGV[1])
        end
        return {n, ttl}
        """)
}

/// bcrypt off the event loops, a bounded number at a time: a flood of log-ins gets a fast 503
/// instead of a queue of hashes that makes every log-in wait.
enum PasswordHashing {
    /// Hashes running or waiting for a thread.
    private static let inFlight = NIOLockedValueBox(0)
    static let maximumInFlight = 2 * System.coreCount

    static func run<Result: Sendable>(_ work: @escaping @Sendable () -> Result) async throws -> Result {
        let admitted = inFlight.withLockedValue { count in
            guard count < maximumInFlight else { return false }
            count += 1
            return true
        }
        guard admitted else {
            var error = APIError(.serviceUnavailable, type: "server_error", code: "busy", message: "Too many log-ins at once; try again shortly.")
            error.headers[.retryAfter] = "1"
            throw error
        }
        defer { inFlight.withLockedValue { $0 -= 1 } }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }
}
