import Foundation
import Hummingbird
import NIOCore

/// The web front end: static files from the `Public` folder, loaded once at start-up.
enum WebAssets {
    static let files: [(route: String, file: String, type: String)] = [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/app.css", "app.css", "text/css; charset=utf-8"),
    ] + ["app", "api", "dom", "markdown", "chat", "documents", "keys", "usage"].map { ("/\($0).js", "\($0).js", "text/javascript; charset=utf-8") }

    /// No inline scripts or styles; the page talks only to its own origin.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    /// A file of the `Public` folder.
    static func load(_ file: String) -> Data {
        guard let url = Bundle.module.url(forResource: "Public/\(file)", withExtension: nil), let data = try? Data(contentsOf: url)
        else { preconditionFailure("web asset \(file) is missing from the bundle") }
        return data
    }

    static func add(to router: Router<BasicRequestContext>) {
        for asset in files {
            let body = ByteBuffer(bytes: load(asset.file))
            var headers: HTTPFields = [.contentType: asset.type, .cacheControl: "no-cache"]
            headers[.contentSecurityPolicy] = contentSecurityPolicy
            router.get(RouterPath(asset.route)) { [headers] _, _ in
                Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
            }
        }
    }
}
