import Foundation
import TernRedis

extension QueueStats {
    /// The stats in Prometheus' text format, labelled with the queue's name.
    public func prometheusText(queue: QueueName) -> String { Self.prometheusText([(queue, self)]) }

    /// Several queues' stats in Prometheus' text format: each metric's help and type once,
    /// then a sample per queue, labelled with its name.
    public static func prometheusText(_ queues: [(name: QueueName, stats: QueueStats)]) -> String {
        var lines: [String] = []
        func family(_ metric: String, _ type: String, _ help: String, _ samples: (_ queue: String, QueueStats) -> [String]) {
            lines += ["# HELP \(metric) \(help)", "# TYPE \(metric) \(type)"]
            for (queue, stats) in queues {
                let name = queue.rawValue.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                lines += samples("queue=\"\(name)\"", stats)
            }
        }
        family("tern_queue_jobs", "gauge", "Jobs in the queue by state.") { queue, stats in
            [("ready", stats.ready), ("delayed", stats.delayed), ("active", stats.active), ("completed", stats.completed),
             ("failed", stats.failed), ("cancelled", stats.cancelled)].map { "tern_queue_jobs{\(queue),state=\"\($0.0)\"} \($0.1)" }
        }
        family("tern_queue_oldest_ready_seconds", "gauge", "How long the oldest ready job has waited.") { queue, stats in
            ["tern_queue_oldest_ready_seconds{\(queue)} \(Double(stats.oldestReadyAge?.milliseconds ?? 0) / 1000)"]
        }
        family("tern_queue_live_workers", "gauge", "Workers that sent a heartbeat recently.") { queue, stats in
            ["tern_queue_live_workers{\(queue)} \(stats.liveWorkers.count)"]
        }
        family(
            "tern_queue_events_total", "counter",
            "Jobs enqueued, started, completed, retried, stalled (their worker died), cancelled and failed (by code)."
        ) { queue, stats in
            stats.totals.sorted(by: { $0.key < $1.key }).filter { $0.key != "runMs" }.map { event, count in
                let parts = event.split(separator: ":", maxSplits: 1).map(String.init)
                let labels = parts.count == 2 ? "event=\"\(parts[0])\",code=\"\(parts[1])\"" : "event=\"\(event)\""
                return "tern_queue_events_total{\(queue),\(labels)} \(count)"
            }
        }
        family("tern_queue_run_seconds_total", "counter", "Time completed jobs spent running.") { queue, stats in
            ["tern_queue_run_seconds_total{\(queue)} \(Double(stats.totals["runMs"] ?? 0) / 1000)"]
        }
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
