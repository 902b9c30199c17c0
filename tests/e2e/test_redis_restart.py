"""Redis stopped and started again under running Tern processes (its append-only file keeps the
queue and the events): while it is away a new request gets a quick 503 `redis_unavailable`; the
answer that was streaming reaches the client whole, through its stream or, if that ended, by
resuming the job's events after the last one it saw; nothing missing, nothing repeated."""
import json
import time
import uuid

import requests

from conftest import job_events, services, side_stack

MOCK_PORT = 17098
API_PORT = 18089
TOKENS = 60


def test_a_redis_restart_loses_nothing(stack):
    settings = {"TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1", "TERN_LLM_MODEL": "mock"}
    mock = ["--tokens", str(TOKENS), "--delay-ms", "100"]
    with side_stack("redis-restart", settings, MOCK_PORT, API_PORT, mock_arguments=mock) as base:
        auth = {"Authorization": f"Bearer {stack.key}"}
        created = requests.post(f"{base}/v1/jobs", headers=auth, timeout=60, json={
            "type": "chat.completion",
            "input": {"model": "smollm2-135m", "messages": [{"role": "user", "content": "count slowly"}]}})
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        texts, last_id, ended, stopped, waited = [], None, None, False, None
        try:
            with requests.get(f"{base}/v1/jobs/{job}/events", headers=auth, stream=True, timeout=120) as response:
                assert response.status_code == 200
                for event_id, event, data in job_events(response):
                    last_id = event_id or last_id
                    if event == "token":
                        texts.append(json.loads(data)["text"])
                    if event in ("completed", "error", "cancelled"):
                        ended = event
                        break
                    if len(texts) == 5 and not stopped:
                        services("stop", "redis")
                        stopped = True
                        started = time.monotonic()
                        refused = requests.post(f"{base}/v1/chat/completions", headers=auth, timeout=60, json={
                            "model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]})
                        waited = time.monotonic() - started
                        assert refused.status_code == 503, refused.text
                        assert refused.json()["error"]["code"] == "redis_unavailable"
                        assert "Retry-After" in refused.headers
                        assert waited < 30
                        services("start", "redis")
        except requests.RequestException as error:
            print(f"\nthe first stream broke: {error!r}")
        print(f"\nRedis restarted: a new chat got its 503 after {waited:.2f} s; the first stream read "
              f"{len(texts)} tokens and ended with {ended}")
        if ended != "completed":  # the stream ended early: the client resumes after the last event it saw
            headers = {**auth, "Last-Event-ID": last_id} if last_id else auth
            with requests.get(f"{base}/v1/jobs/{job}/events", headers=headers, stream=True, timeout=120) as response:
                assert response.status_code == 200
                for event_id, event, data in job_events(response):
                    if event == "token":
                        texts.append(json.loads(data)["text"])
                    if event in ("completed", "error", "cancelled"):
                        ended = event
                        break
        assert stopped
        assert ended == "completed"
        assert "".join(texts) == "Mock answer" + "".join(f" token {i}" for i in range(1, TOKENS))
