"""A job of a type no worker runs fails at once and shows up: in the worker's own metrics
(`TERN_WORKER_METRICS_PORT`, Prometheus' format, behind `TERN_METRICS_TOKEN`) and as a warning of
`tern queue status`."""
import os
import subprocess
import uuid

import requests

from conftest import ROOT, STATE, TERN, wait_until

DRILL = str(ROOT / ".build" / "debug" / "QueueDrill")
METRICS_PORT = 18092


def test_an_unhandled_job_type_is_counted_and_reported(stack):
    queue = f"unhandled-{uuid.uuid4().hex[:8]}"
    redis_url = f"redis://127.0.0.1:{os.environ.get('TERN_REDIS_PORT', '17379')}"
    subprocess.run([DRILL, "enqueue", "--redis", redis_url, "--queue", queue, "--count", "1"], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TERN_REDIS_URL", "TERN_DATABASE_URL")}
    env.update({"TERN_QUEUE": queue, "TERN_WORKER_METRICS_PORT": str(METRICS_PORT), "TERN_METRICS_TOKEN": "secret"})
    worker = subprocess.Popen([TERN, "worker", "--concurrency", "1"], env=env,
                              stdout=open(STATE / "logs" / "metrics-worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"

        def counted():
            text = requests.get(url, headers={"Authorization": "Bearer secret"}, timeout=5).text
            return [line for line in text.splitlines() if line.startswith("tern_jobs_total")
                    and f'queue="{queue}"' in line and 'type="unknown"' in line and 'outcome="failed"' in line
                    and line.endswith(" 1")]

        wait_until(counted, message="the worker's metrics to count the failed job")
        assert requests.get(url, timeout=5).status_code == 401
        status = subprocess.run([TERN, "queue", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 3
        assert "WARNING: 1 jobs failed because no worker handles their type (live workers handle: chat, document.ingest)" in status.stdout
    finally:
        worker.terminate()
        worker.wait(timeout=60)
