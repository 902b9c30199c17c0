import Foundation
import TernRedis

extension QueueStats {
    /// The stats in Prometheus' text format, labelled with the queue's name.
    public func prometheusText(queue: QueueName) -> String {
        let name = queue.rawValue.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        var lines = [
            "# HELP tern_queue_jobs Jobs in the queue by state.",
            "# TYPE tern_queue_jobs gauge",
        ]
        for (state, count) in [("ready", ready), ("delayed", delayed), ("active", active), ("completed", completed), ("failed", failed), ("cancelled", cancelled)] {
            lines.append("tern_queue_jobs{queue=\"\(name)\",state=\"\(state)\"} \(count)")
        }
        lines += [
            "# HELP tern_queue_oldest_ready_seconds How long the oldest ready job has waited.",
            "# TYPE tern_queue_oldest_ready_seconds gauge",
            "tern_queue_oldest_ready_seconds{queue=\"\(name)\"} \(Double(oldestReadyAge?.milliseconds ?? 0) / 1000)",
            "# HELP tern_queue_live_workers Workers that sent a heartbeat recently.",
            "# TYPE tern_queue_live_workers gauge",
            "tern_queue_live_workers{queue=\"\(name)\"} \(liveWorkers.count)",
            "# HELP tern_queue_events_total Jobs enqueued, started, completed, retried, stalled (their worker died), cancelled and failed (by code).",
            "# TYPE tern_queue_events_total counter",
        ]
        for (event, count) in totals.sorted(by: { $0.key < $1.key }) where event != "runMs" {
            let parts = event.split(separator: ":", maxSplits: 1).map(String.init)
            let labels = parts.count == 2 ? "event=\"\(parts[0])\",code=\"\(parts[1])\"" : "event=\"\(event)\""
            lines.append("tern_queue_events_total{queue=\"\(name)\",\(labels)} \(count)")
        }
        lines += [
            "# HELP tern_queue_run_seconds_total Time completed jobs spent running.",
            "# TYPE tern_queue_run_seconds_total counter",
            "tern_queue_run_seconds_total{queue=\"\(name)\"} \(Double(totals["runMs"] ?? 0) / 1000)",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// A few lines for people: counts, the oldest wait, workers, totals, then any warnings.
    public func report(queue: QueueName) -> String {
        var lines = [
            "queue \(queue)",
            "  ready \(ready) · delayed \(delayed) · active \(active) · completed \(completed) · failed \(failed) · cancelled \(cancelled)",
        ]
        if let oldestReadyAge { lines.append("  the oldest ready job has waited \(oldestReadyAge.milliseconds) ms") }
        lines.append("  live workers: \(liveWorkers.count)" + (handledTypes.isEmpty ? "" : ", running job types: \(handledTypes.sorted().joined(separator: ", "))"))
        if !totals.isEmpty {
            lines.append("  totals: " + totals.sorted { $0.key < $1.key }.filter { $0.key != "runMs" }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        lines += warnings.map { "WARNING: \($0)" }
        return lines.joined(separator: "\n")
    }
}
