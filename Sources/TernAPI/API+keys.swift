import Foundation
import Hummingbird
import Logging
import TernAI
import TernRedis
import TernStore

/// An API key as the keys API shows it; `key` (the secret) only in the answer that creates it.
struct KeyObject: Encodable {
    let id: String
    var object = "api_key"
    let name: String
    let prefix: String
    let created_at: Int
    let revoked_at: Int?
    var key: String?

    init(_ stored: StoredAPIKey, secret: String? = nil) {
        id = stored.id.uuidString.lowercased()
        name = stored.name
        prefix = stored.prefix
        created_at = Int(stored.createdAt.timeIntervalSince1970)
        revoked_at = stored.revokedAt.map { Int($0.timeIntervalSince1970) }
        key = secret
    }
}

struct KeyList: Encodable {
    var object = "list"
    let data: [KeyObject]
}

struct CreateKeyRequest: JSONBody {
    let name: String

    init(json: JSONObject) throws {
        name = try json.string("name")
    }
}

extension API {
    /// `POST /v1/keys` (the secret is shown once), `GET /v1/keys`, `DELETE /v1/keys/{id}`.
    func addKeyRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/keys") { request, _ in
            let user = try await authenticate(request).user
            let body = try await decodeBody(CreateKeyRequest.self, of: request, what: "key request")
            let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
            guard (1...100).contains(name.count) else { throw APIError.invalid("A key needs a name of 1 to 100 characters.", param: "name") }
            let created = try await store.createAPIKey(for: user, name: name)
            guard let stored = try await store.apiKeys(of: user).first(where: { $0.id == created.id }) else { throw APIError.keyNotFound }
            logger.info("api key created", metadata: ["user": "\(user)", "key": "\(stored.prefix)"])
            return try json(KeyObject(stored, secret: created.secret), status: .created)
        }
        router.get("/v1/keys") { request, _ in
            let user = try await authenticate(request).user
            return try json(KeyList(data: try await store.apiKeys(of: user).map { KeyObject($0) }))
        }
        router.delete("/v1/keys/:id") { request, context in
            let user = try await authenticate(request).user
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
                  try await store.revokeAPIKey(id, of: user),
                  let stored = try await store.apiKeys(of: user).first(where: { $0.id == id })
            else { throw APIError.keyNotFound }
            // Instances that have the key cached refuse it once they see the marker, which
            // outlives their entries. Revoking again (the key stays revoked) sets it again.
            keyCache.remove(id: id)
            try await redis.set(
                APIKeyCache.revocationMarker(user: user, key: id), to: "1",
                expiresIn: Int((keyCache.lifetime * 2).components.seconds) + 1)
            logger.info("api key revoked", metadata: ["user": "\(user)", "key": "\(stored.prefix)"])
            return try json(KeyObject(stored))
        }
    }
}
