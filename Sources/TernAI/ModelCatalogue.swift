import Foundation

/// The models Tern serves and the upstream deployments each one runs on, in order of preference:
/// the first is used while it answers, the next ones take over when it fails or its circuit is
/// open. Read from a JSON file (`TERN_MODELS_FILE`):
///
///     {"chat": [{"name": "smollm2-135m", "context_window": 2048, "system_prompt": "Be brief.", "deployments": [
///         {"name": "local", "base_url": "http://127.0.0.1:7081/v1", "model": "smollm2", "slots": 4, "tokenizer": true},
///         {"name": "cloud", "base_url": "https://api.example.com/v1", "model": "small",
///          "api_key_env": "CLOUD_KEY", "slots": 16, "rpm": 600}]}],
///      "embedding": [{"name": "all-minilm-l6-v2", "deployments": [...]}]}
///
/// A deployment's key comes from the environment variable `api_key_env` or the file
/// `api_key_file`, never from the catalogue itself.
public struct ModelCatalogue: Sendable, Equatable {
    public struct Deployment: Sendable, Equatable {
        /// Unique within its model; in logs.
        public var name: String
        /// Base URL including `/v1`.
        public var baseURL: String
        /// The model name the upstream expects.
        public var upstreamModel: String
        public var apiKey: String?
        /// Requests it serves at once (a llama-server's parallel slots).
        public var slots: Int
        /// Requests it accepts per minute, if it has such a limit.
        public var requestsPerMinute: Int?
        /// Whether it counts tokens at `/tokenize` (llama.cpp's server).
        public var tokenizer: Bool

        public init(
            name: String, baseURL: String, upstreamModel: String, apiKey: String? = nil, slots: Int, requestsPerMinute: Int? = nil,
            tokenizer: Bool = false
        ) {
            self.name = name
            self.baseURL = baseURL
            self.upstreamModel = upstreamModel
            self.apiKey = apiKey
            self.slots = slots
            self.requestsPerMinute = requestsPerMinute
            self.tokenizer = tokenizer
        }
    }

    public struct Model: Sendable, Equatable {
        /// The public name clients ask for.
        public var name: String
        /// Tokens of prompt and answer together one request may hold, if known.
        public var contextWindow: Int?
        /// Put first in every conversation that brings no system message of its own.
        public var systemPrompt: String?
        public var deployments: [Deployment]

        public init(name: String, contextWindow: Int? = nil, systemPrompt: String? = nil, deployments: [Deployment]) {
            self.name = name
            self.contextWindow = contextWindow
            self.systemPrompt = systemPrompt
            self.deployments = deployments
        }

        /// Calls of this model that may run at once across all workers: the smallest
        /// deployment's slots, since any one deployment may have to carry all of them.
        public var slots: Int { deployments.map(\.slots).min() ?? 1 }

        /// Calls started per minute across all workers: the strictest deployment's limit.
        public var requestsPerMinute: Int? { deployments.compactMap(\.requestsPerMinute).min() }
    }

    public var chat: [Model]
    public var embedding: [Model]

    public init(chat: [Model], embedding: [Model]) {
        self.chat = chat
        self.embedding = embedding
    }

    /// Reads a catalogue file; `environment` resolves `api_key_env`. Without `resolvingKeys`
    /// (the API, which calls no upstream) the keys are left out. Throws `ModelCatalogueError`
    /// with what is wrong.
    public static func load(contentsOf url: URL, environment: [String: String], resolvingKeys: Bool = true) throws -> ModelCatalogue {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ModelCatalogueError("cannot read \(url.path): \(error.localizedDescription)")
        }
        let file: CatalogueFile
        do {
            file = try JSONDecoder().decode(CatalogueFile.self, from: data)
        } catch {
            throw ModelCatalogueError("\(url.path) is not a model catalogue: \(error)")
        }
        let catalogue = ModelCatalogue(
            chat: try (file.chat ?? []).map { try $0.resolved(environment: environment, keys: resolvingKeys) },
            embedding: try (file.embedding ?? []).map { try $0.resolved(environment: environment, keys: resolvingKeys) })
        try catalogue.validate()
        return catalogue
    }

    /// Checks names, URLs and slots.
    public func validate() throws {
        guard !chat.isEmpty else { throw ModelCatalogueError("the catalogue has no chat model") }
        var names = Set<String>()
        for model in chat + embedding {
            guard !model.name.isEmpty, names.insert(model.name).inserted else {
                throw ModelCatalogueError("model names must be unique and not empty ('\(model.name)')")
            }
            guard !model.deployments.isEmpty else { throw ModelCatalogueError("model '\(model.name)' has no deployment") }
            if let window = model.contextWindow, window < 16 { throw ModelCatalogueError("model '\(model.name)': context_window is too small") }
            var deploymentNames = Set<String>()
            for deployment in model.deployments {
                guard deploymentNames.insert(deployment.name).inserted else {
                    throw ModelCatalogueError("model '\(model.name)' has two deployments named '\(deployment.name)'")
                }
                guard let url = URL(string: deployment.baseURL), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                    throw ModelCatalogueError("model '\(model.name)', deployment '\(deployment.name)': base_url must be an http(s) URL")
                }
                guard deployment.slots > 0, (deployment.requestsPerMinute ?? 1) > 0 else {
                    throw ModelCatalogueError("model '\(model.name)', deployment '\(deployment.name)': slots and rpm must be at least 1")
                }
            }
        }
    }
}

public struct ModelCatalogueError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The file's shape.
private struct CatalogueFile: Decodable {
    struct Deployment: Decodable {
        let name: String?
        let base_url: String
        let model: String?
        let api_key_env: String?
        let api_key_file: String?
        let slots: Int?
        let rpm: Int?
        let tokenizer: Bool?
    }
    struct Model: Decodable {
        let name: String
        let context_window: Int?
        let system_prompt: String?
        let deployments: [Deployment]

        func resolved(environment: [String: String], keys: Bool) throws -> ModelCatalogue.Model {
            ModelCatalogue.Model(name: name, contextWindow: context_window, systemPrompt: system_prompt, deployments: try deployments.enumerated().map { index, deployment in
                var key: String?
                if !keys {
                    key = nil
                } else if let variable = deployment.api_key_env {
                    guard let value = environment[variable], !value.isEmpty else {
                        throw ModelCatalogueError("model '\(name)': the environment variable \(variable) (api_key_env) is not set")
                    }
                    key = value
                } else if let path = deployment.api_key_file {
                    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                        throw ModelCatalogueError("model '\(name)': cannot read the key file \(path) (api_key_file)")
                    }
                    key = text.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                return ModelCatalogue.Deployment(
                    name: deployment.name ?? "deployment-\(index + 1)", baseURL: deployment.base_url, upstreamModel: deployment.model ?? name,
                    apiKey: key, slots: deployment.slots ?? 4, requestsPerMinute: deployment.rpm, tokenizer: deployment.tokenizer ?? false)
            })
        }
    }
    let chat: [Model]?
    let embedding: [Model]?
}
