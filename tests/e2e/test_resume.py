"""A job's events resume on another API instance: a client reads half an answer from instance 1,
drops the connection, and reconnects to instance 2 with Last-Event-ID; the joined text is the
whole answer, nothing missing, nothing repeated."""
import json
import os
import uuid

import requests

from conftest import job_events, start_tern, stop_all, wait_until

MOCK_PORT = 17093
API_PORTS = (18083, 18084)
TOKENS = 40


def start(arguments, env, name):
    return start_tern(arguments, env, f"resume-{name}")


def read_events(response, stop_after_tokens=None):
    """Token texts and the last event id, up to `stop_after_tokens` tokens or the job's end."""
    texts, last_id = [], None
    for event_id, event, text in job_events(response):
        last_id = event_id or last_id
        data = json.loads(text)
        if event == "token":
            texts.append(data["text"])
        assert event not in ("error", "cancelled"), (event, data)
        if event == "completed" or (stop_after_tokens and len(texts) >= stop_after_tokens):
            return texts, last_id, event
    return texts, last_id, None


def test_a_dropped_stream_resumes_on_another_instance(stack):
    env = dict(os.environ)
    env.update({"TERN_QUEUE": f"resume-{uuid.uuid4().hex[:8]}", "TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1",
                "TERN_LLM_MODEL": "mock"})
    processes = [start(["mock-llm", "--port", str(MOCK_PORT), "--tokens", str(TOKENS), "--delay-ms", "50"], env, "mock")]
    for port in API_PORTS:
        processes.append(start(["api"], {**env, "TERN_PORT": str(port)}, f"api-{port}"))
    processes.append(start(["worker", "--concurrency", "1"], env, "worker"))
    try:
        for port in API_PORTS:
            wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok, message=f"API on {port}")
        wait_until(lambda: requests.get(f"http://127.0.0.1:{MOCK_PORT}/health", timeout=5).ok, message="mock upstream")
        auth = {"Authorization": f"Bearer {stack.key}"}
        created = requests.post(f"http://127.0.0.1:{API_PORTS[0]}/v1/jobs", headers=auth, timeout=30, json={
            "type": "chat.completion", "input": {"model": "smollm2-135m", "messages": [{"role": "user", "content": "count"}]}})
        assert created.status_code == 202, created.text
        job = created.json()["id"]

        with requests.get(f"http://127.0.0.1:{API_PORTS[0]}/v1/jobs/{job}/events", headers=auth, stream=True, timeout=120) as first:
            assert first.status_code == 200
            head, last_id, _ = read_events(first, stop_after_tokens=TOKENS // 2)
        assert len(head) >= TOKENS // 2 and last_id
        with requests.get(f"http://127.0.0.1:{API_PORTS[1]}/v1/jobs/{job}/events", stream=True, timeout=120,
                          headers={**auth, "Last-Event-ID": last_id}) as second:
            assert second.status_code == 200
            tail, _, end = read_events(second)
        assert end == "completed"
        expected = "Mock answer" + "".join(f" token {i}" for i in range(1, TOKENS))
        assert "".join(head + tail) == expected
        status = requests.get(f"http://127.0.0.1:{API_PORTS[1]}/v1/jobs/{job}", headers=auth, timeout=30).json()
        assert status["status"] == "completed"
    finally:
        stop_all(processes)
