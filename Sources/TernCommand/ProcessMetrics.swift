import Hummingbird
import Logging
import NIOCore
import Metrics
import Prometheus
import TernAPI

/// This process's metrics, in Prometheus' format: swift-metrics is bootstrapped with a
/// Prometheus registry the first time this is used (once per process).
enum ProcessMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    /// A small HTTP server for a process that has no other (a worker): `GET /metrics`, with the
    /// bearer `token` when one is set.
    static func server(
        registry: PrometheusCollectorRegistry, host: String, port: Int, token: String?, logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { request, _ -> Response in
            if let token, !request.carriesBearer(token) {
                return Response(status: .unauthorized)
            }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: registry.emitToString())))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }
}
