import Foundation
import NIOSSL
import Testing
import TernRedis
import TernTestSupport

/// TLS against a redis-server of the test's own, with a certificate made for the test.
@Suite struct RedisTLSTests {
    @Test func talksToATLSServer() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tern-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificate = folder.appendingPathComponent("cert.pem").path
        let key = folder.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0)

        let server = try await PrivateRedisServer.started(tls: (certificate, key))
        let tlsPort = try #require(server.tlsPort)

        var configuration = try RedisConfiguration(url: "rediss://localhost:\(tlsPort)")
        configuration.tls?.trustRoots = .file(certificate)
        let client = RedisClient(configuration: configuration)
        let answered = await eventually { (try? await client.send("PING"))?.string == "PONG" }
        #expect(answered)
        #expect(try await client.send("ECHO", "over tls").string == "over tls")
        await client.shutdown()

        // Without the certificate's root the handshake fails with an error, not a hang.
        let untrusting = RedisClient(configuration: try RedisConfiguration(url: "rediss://localhost:\(tlsPort)"))
        await #expect(throws: (any Error).self) { try await untrusting.send("PING") }
        await untrusting.shutdown()
        try await server.shutdown()  // through its plain port
    }

    @Test func parsesTLSURLs() throws {
        #expect(try RedisConfiguration(url: "rediss://example.org:6380").tls != nil)
        #expect(try RedisConfiguration(url: "redis://example.org").tls == nil)
    }
}
