"""PostgreSQL stopped and started again under running Tern processes: while it is away, a request
that needs it gets a quick 503 with a stable code (no hang, no crash), an answer already being
generated streams to its end, and its worker waits to store it; once the database is back, the
same processes serve again and that answer is in its conversation, nothing lost."""
import time
import uuid

import requests

from conftest import STATE, completion_pieces, psql, services, side_stack, wait_until

MOCK_PORT = 17097
API_PORT = 18088
TOKENS = 60


def test_a_postgres_restart_loses_nothing(stack):
    settings = {"TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1", "TERN_LLM_MODEL": "mock"}
    mock = ["--tokens", str(TOKENS), "--delay-ms", "100"]
    with side_stack("pg-restart", settings, MOCK_PORT, API_PORT, mock_arguments=mock) as base:
        auth = {"Authorization": f"Bearer {stack.key}"}
        response = requests.post(
            f"{base}/v1/chat/completions", stream=True, timeout=120, headers=auth,
            json={"model": "smollm2-135m", "stream": True, "messages": [{"role": "user", "content": "count slowly"}]})
        assert response.status_code == 200
        job_id = str(uuid.UUID(response.headers["X-Tern-Job-Id"]))
        pieces, stopped = [], False
        try:
            for piece in completion_pieces(response):
                pieces.append(piece)
                if len(pieces) == 5 and not stopped:
                    services("stop", "postgres")
                    stopped = True
                    # Requests that need the database fail fast and say why.
                    started = time.monotonic()
                    listed = requests.get(f"{base}/v1/conversations", headers=auth, timeout=60)
                    assert listed.status_code == 503, listed.text
                    assert listed.json()["error"]["code"] == "database_unavailable"
                    waited = time.monotonic() - started
                    assert waited < 30
                    # Once one request has waited the whole deadline, the next give up sooner.
                    started = time.monotonic()
                    again = requests.get(f"{base}/v1/conversations", headers=auth, timeout=60)
                    assert again.status_code == 503, again.text
                    print(f"\nPostgreSQL stopped: GET /v1/conversations answered 503 database_unavailable after {waited:.1f} s, "
                          f"the next after {time.monotonic() - started:.1f} s")
                    assert requests.get(f"{base}/healthz", timeout=60).status_code == 503
            assert stopped, "the answer ended before PostgreSQL was stopped"
            # The answer streamed through Redis to its end while the database was away.
            assert "".join(pieces) == "Mock answer" + "".join(f" token {i}" for i in range(1, TOKENS))
            # The worker's write of the answer outlasts its 15 s deadline and waits on.
            worker_log = STATE / "logs" / "pg-restart-worker.log"
            wait_until(lambda: "the database is unavailable" in worker_log.read_text(errors="replace"),
                       timeout=120, message="the worker to wait for the database")
        finally:
            services("start", "postgres")

        # The same processes serve again, and the answer made while the database was away is stored.
        wait_until(lambda: requests.get(f"{base}/healthz", timeout=10).ok, timeout=120, message="the API to be healthy again")
        wait_until(lambda: psql(f"SELECT status FROM jobs WHERE id = '{job_id}'")[0][0] == "completed",
                   timeout=180, message="the job to be stored as completed")
        # Stored by the attempt that made it: the worker waited for the database instead of failing.
        assert psql(f"SELECT attempts FROM jobs WHERE id = '{job_id}'")[0][0] == "1"
        conversation = psql(f"SELECT conversation_id FROM jobs WHERE id = '{job_id}'")[0][0]
        read = requests.get(f"{base}/v1/conversations/{conversation}", headers=auth, timeout=30)
        assert read.status_code == 200, read.text
        messages = read.json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[-1]["content"] == "".join(pieces)
        again = requests.post(f"{base}/v1/chat/completions", headers=auth, timeout=120,
                              json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "again"}]})
        assert again.status_code == 200, again.text
