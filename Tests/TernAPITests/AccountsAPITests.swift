import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport

/// Accounts: sign-up and log-in with bcrypt, sessions in Redis behind an HttpOnly SameSite
/// cookie, CSRF tokens on cookie-authenticated writes, log-out, and a limit on failed log-ins.
@Suite struct AccountsAPITests {
    static var configuration: API.Configuration {
        var configuration = API.Configuration()
        configuration.bcryptCost = 4  // the minimum: the tests check behaviour, not strength
        configuration.maximumLoginFailures = 3
        return configuration
    }

    static func credentials(_ email: String, _ password: String) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: ["email": email, "password": password]))
    }

    static let jsonBody: HTTPFields = [.contentType: "application/json"]

    /// The session cookie a response sets, as a request's `Cookie` header.
    static func cookie(_ response: TestResponse) -> String {
        (response.headers[.setCookie] ?? "").split(separator: ";").first.map(String.init) ?? ""
    }

    @Test func signUpUseTheSessionAndLogOut() async throws {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let api = testAPI(store, redis, configuration: Self.configuration).api
                let email = TestServices.uniqueName("Signup") + "@Example.com"
                try await Application(router: api.router()).test(.router) { client in
                    var cookie = "", csrf = ""
                    try await client.execute(uri: "/v1/auth/signup", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(email, "correct horse")) { response in
                        #expect(response.status == .created)
                        let setCookie = response.headers[.setCookie] ?? ""
                        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax") && setCookie.contains("Path=/"))
                        cookie = Self.cookie(response)
                        csrf = object(response)["csrf_token"] as? String ?? ""
                        #expect((object(response)["user"] as? [String: Any])?["email"] as? String == email.lowercased())
                    }
                    #expect(cookie.hasPrefix("tern_session=") && csrf.count == 64)
                    // Stored as a bcrypt hash, never as the password.
                    let hash = try #require(try await store.credentials(email: email.lowercased())?.passwordHash)
                    #expect(hash.hasPrefix("$2") && !hash.contains("correct horse"))
                    // The same e-mail cannot sign up twice.
                    try await client.execute(uri: "/v1/auth/signup", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(email, "another password")) { response in
                        #expect(response.status == .conflict)
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "email_taken")
                    }
                    try await client.execute(uri: "/v1/auth/session", method: .get, headers: [.cookie: cookie]) { response in
                        #expect(response.status == .ok)
                        #expect(object(response)["csrf_token"] as? String == csrf)
                    }
                    // Reads need only the cookie; writes need the CSRF token too.
                    try await client.execute(uri: "/v1/keys", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .ok) }
                    try await client.execute(uri: "/v1/keys", method: .post, headers: [.cookie: cookie, .contentType: "application/json"],
                                             body: ByteBuffer(string: #"{"name":"web"}"#)) { response in
                        #expect(response.status == .forbidden)
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "csrf_token_invalid")
                    }
                    var withToken: HTTPFields = [.cookie: cookie, .contentType: "application/json"]
                    withToken[HTTPField.Name("X-CSRF-Token")!] = String(csrf.reversed())
                    try await client.execute(uri: "/v1/keys", method: .post, headers: withToken, body: ByteBuffer(string: #"{"name":"web"}"#)) {
                        #expect($0.status == .forbidden)
                    }
                    withToken[HTTPField.Name("X-CSRF-Token")!] = csrf
                    try await client.execute(uri: "/v1/keys", method: .post, headers: withToken, body: ByteBuffer(string: #"{"name":"web"}"#)) {
                        #expect($0.status == .created)
                    }
                    // Log-out ends the session on the server, not just in this browser.
                    try await client.execute(uri: "/v1/auth/logout", method: .post, headers: withToken) { response in
                        #expect(response.status == .noContent)
                        #expect((response.headers[.setCookie] ?? "").contains("Max-Age=0"))
                    }
                    try await client.execute(uri: "/v1/keys", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .unauthorized) }
                    try await client.execute(uri: "/v1/auth/session", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .unauthorized) }
                    // Logging in again gives a new session.
                    try await client.execute(uri: "/v1/auth/login", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(email.uppercased(), "correct horse")) { response in
                        #expect(response.status == .ok)
                        #expect(Self.cookie(response).hasPrefix("tern_session=") && Self.cookie(response) != cookie)
                    }
                }
            }
        }
    }

    @Test func badCredentialsAreRefusedAndRepeatedFailuresLockTheAccount() async throws {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                let api = testAPI(store, redis, configuration: Self.configuration).api
                let email = TestServices.uniqueName("locked") + "@example.com"
                try await Application(router: api.router()).test(.router) { client in
                    for (body, param) in [(Self.credentials("not-an-email", "long enough"), "email"), (Self.credentials(email, "short"), "password"),
                                          (Self.credentials(email, String(repeating: "x", count: 73)), "password"),
                                          (ByteBuffer(string: #"{"email": 1}"#), nil)] {
                        try await client.execute(uri: "/v1/auth/signup", method: .post, headers: Self.jsonBody, body: body) { response in
                            #expect(response.status == .badRequest)
                            #expect((object(response)["error"] as? [String: Any])?["param"] as? String == param)
                        }
                    }
                    try await client.execute(uri: "/v1/auth/signup", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(email, "the right one")) { #expect($0.status == .created) }
                    // An unknown account and a wrong password look the same.
                    for who in [TestServices.uniqueName("nobody") + "@example.com", email] {
                        try await client.execute(uri: "/v1/auth/login", method: .post, headers: Self.jsonBody,
                                                 body: Self.credentials(who, "the wrong one")) { response in
                            #expect(response.status == .unauthorized)
                            #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "invalid_credentials")
                        }
                    }
                    for _ in 0..<2 {
                        try await client.execute(uri: "/v1/auth/login", method: .post, headers: Self.jsonBody,
                                                 body: Self.credentials(email, "the wrong one")) { #expect($0.status == .unauthorized) }
                    }
                    // Three failures: even the right password is refused until the window ends.
                    try await client.execute(uri: "/v1/auth/login", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(email, "the right one")) { response in
                        #expect(response.status == .tooManyRequests)
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "too_many_login_attempts")
                        #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 > 0)
                    }
                }
            }
        }
    }

    @Test func signUpCanBeClosed() async throws {
        try await TestServices.withStore { store in
            try await TestServices.withRedis { (redis: RedisClient) async throws in
                var configuration = Self.configuration
                configuration.allowSignup = false
                let api = testAPI(store, redis, configuration: configuration).api
                try await Application(router: api.router()).test(.router) { client in
                    try await client.execute(uri: "/v1/auth/signup", method: .post, headers: Self.jsonBody,
                                             body: Self.credentials(TestServices.uniqueName("closed") + "@example.com", "long enough")) { response in
                        #expect(response.status == .forbidden)
                        #expect((object(response)["error"] as? [String: Any])?["code"] as? String == "signup_closed")
                    }
                }
            }
        }
    }
}
