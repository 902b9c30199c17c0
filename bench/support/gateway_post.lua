-- wrk script of bench/gateway: a non-streaming chat completion per request (model and bearer key
-- from BENCH_MODEL and BENCH_KEY), and one summary line at the end in microseconds:
--   WRK requests=N duration_us=N p50_us=N p99_us=N errors=N
-- errors counts failed connects, reads, writes, timeouts and answers other than 2xx/3xx.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY") or ""
if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "smollm2-135m") ..
  '","messages":[{"role":"user","content":"Hello, how are you?"}]}'

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
