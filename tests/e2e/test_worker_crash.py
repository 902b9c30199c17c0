"""A worker killed with SIGKILL while it holds a job: another worker finishes the job, and the
client's stream ends with the whole answer, nothing missing and nothing repeated."""
import os
import signal
import uuid

import requests

from conftest import completion_pieces, psql, start_tern, stop_all, wait_until

MOCK_PORT = 17091
API_PORT = 18081
TOKENS = 40


def start(arguments, env, name):
    return start_tern(arguments, env, f"crash-{name}")


def test_job_of_a_killed_worker_completes_on_another(stack):
    env = dict(os.environ)
    env.update({
        # Same Redis and Postgres as the stack, its own queue, the mock model, a short lease.
        "TERN_QUEUE": f"crash-{uuid.uuid4().hex[:8]}",
        "TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1",
        "TERN_LLM_MODEL": "mock",
        "TERN_PORT": str(API_PORT),
        "TERN_JOB_LEASE_SECONDS": "2",
    })
    processes = [start(["mock-llm", "--port", str(MOCK_PORT), "--tokens", str(TOKENS), "--delay-ms", "100"], env, "mock"),
                 start(["api"], env, "api")]
    first_worker = start(["worker", "--concurrency", "1"], env, "worker-a")
    processes.append(first_worker)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{API_PORT}/healthz", timeout=5).ok, message="crash-test API")
        wait_until(lambda: requests.get(f"http://127.0.0.1:{MOCK_PORT}/health", timeout=5).ok, message="mock upstream")
        response = requests.post(
            f"http://127.0.0.1:{API_PORT}/v1/chat/completions", stream=True, timeout=120,
            headers={"Authorization": f"Bearer {stack.key}"},
            json={"model": "smollm2-135m", "stream": True, "messages": [{"role": "user", "content": "count"}]})
        assert response.status_code == 200
        job_id = str(uuid.UUID(response.headers["X-Tern-Job-Id"]))
        pieces, second_worker = [], None
        for piece in completion_pieces(response):
            pieces.append(piece)
            if len(pieces) == 5 and second_worker is None:
                first_worker.send_signal(signal.SIGKILL)
                first_worker.wait(timeout=30)
                second_worker = start(["worker", "--concurrency", "1"], env, "worker-b")
                processes.append(second_worker)
        assert second_worker is not None, "the worker was never killed mid-job"
        expected = "Mock answer" + "".join(f" token {i}" for i in range(1, TOKENS))
        assert "".join(pieces) == expected
        # The worker stores the outcome just after the stream's last event.
        wait_until(lambda: psql(f"SELECT status FROM jobs WHERE id = '{job_id}'")[0][0] == "completed",
                   timeout=60, message="the job to be stored as completed")
        assert psql(f"SELECT attempts FROM jobs WHERE id = '{job_id}'")[0][0] == "2"
    finally:
        stop_all(processes)
