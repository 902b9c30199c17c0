import Testing
import TernQueue

@Suite struct QueueMetricsTests {
    @Test func severalQueuesShareOneHelpAndTypePerMetric() {
        let text = QueueStats.prometheusText([
            (QueueName("chat"), QueueStats(ready: 2, totals: ["completed": 5, "failed:upstream_error": 1, "runMs": 1500])),
            (QueueName("chat-embeddings"), QueueStats(active: 1)),
        ])
        let lines = text.split(separator: "\n").map(String.init)
        for metric in ["tern_queue_jobs", "tern_queue_oldest_ready_seconds", "tern_queue_live_workers", "tern_queue_events_total", "tern_queue_run_seconds_total"] {
            #expect(lines.filter { $0.hasPrefix("# HELP \(metric) ") }.count == 1)
            #expect(lines.filter { $0.hasPrefix("# TYPE \(metric) ") }.count == 1)
        }
        #expect(lines.contains(#"tern_queue_jobs{queue="chat",state="ready"} 2"#))
        #expect(lines.contains(#"tern_queue_jobs{queue="chat-embeddings",state="active"} 1"#))
        #expect(lines.contains(#"tern_queue_events_total{queue="chat",event="failed",code="upstream_error"} 1"#))
        #expect(lines.contains(#"tern_queue_run_seconds_total{queue="chat"} 1.5"#))
        // Every sample follows its own family's header.
        var family = ""
        for line in lines {
            if line.hasPrefix("# TYPE ") { family = String(line.split(separator: " ")[2]) }
            if !line.hasPrefix("#") { #expect(line.hasPrefix(family + "{")) }
        }
    }
}
