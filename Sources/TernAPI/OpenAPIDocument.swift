import Foundation
import Hummingbird
import NIOCore

/// `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint and error
/// (`Public/openapi.json`), with the configured model names as the `model` fields' values.
enum OpenAPIDocument {
    static func add(to router: Router<BasicRequestContext>, chatModels: [String], embeddingModels: [String]) {
        let body = ByteBuffer(bytes: document(chatModels: chatModels, embeddingModels: embeddingModels))
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-cache"], body: .init(byteBuffer: body))
        }
    }

    static func document(chatModels: [String], embeddingModels: [String]) -> Data {
        let data = WebAssets.load("openapi.json")
        guard var root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            preconditionFailure("Public/openapi.json is not a JSON object")
        }
        for (schema, models) in [("ChatCompletionRequest", chatModels), ("EmbeddingRequest", embeddingModels)] {
            setModels(models, of: schema, in: &root)
        }
        return (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])) ?? data
    }

    private static func setModels(_ models: [String], of schema: String, in root: inout [String: Any]) {
        guard var components = root["components"] as? [String: Any], var schemas = components["schemas"] as? [String: Any],
              var request = schemas[schema] as? [String: Any], var properties = request["properties"] as? [String: Any]
        else { return }
        properties["model"] = ["type": "string", "enum": models, "description": "A configured model (see GET /v1/models)."]
        request["properties"] = properties
        schemas[schema] = request
        components["schemas"] = schemas
        root["components"] = components
    }
}
