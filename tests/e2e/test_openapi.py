"""Schemathesis (a client no one here wrote) generates requests from /openapi.json, valid and
invalid, and checks every answer against the document: no 5xx, only documented statuses,
content types, headers and bodies. The API runs with its workers and the mock upstream, so
generated chat completions and embeddings really run through the queue."""
import os
import pathlib
import re
import subprocess
import uuid

import requests

from conftest import STATE, start_tern, stop_all, wait_until

MOCK_PORT = 17095
API_PORT = 18086
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"


def test_every_generated_request_gets_a_documented_answer(stack):
    env = dict(os.environ)
    env.update({"TERN_QUEUE": f"openapi-{uuid.uuid4().hex[:8]}", "TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1",
                "TERN_LLM_MODEL": "mock", "TERN_EMBEDDING_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1",
                "TERN_EMBEDDING_UPSTREAM_MODEL": "mock", "TERN_RATE_LIMIT_KEY_RPM": "0", "TERN_RATE_LIMIT_USER_RPM": "0",
                "TERN_RATE_LIMIT_KEY_TPM": "0", "TERN_RATE_LIMIT_USER_TPM": "0", "TERN_BCRYPT_COST": "4", "TERN_PORT": str(API_PORT)})
    processes = [start_tern(["mock-llm", "--port", str(MOCK_PORT), "--tokens", "4"], env, "openapi-mock"),
                 start_tern(["api"], env, "openapi-api"),
                 start_tern(["worker", "--concurrency", "8"], env, "openapi-worker")]
    base = f"http://127.0.0.1:{API_PORT}"
    try:
        wait_until(lambda: requests.get(base + "/healthz", timeout=5).ok, message="the API")
        wait_until(lambda: requests.get(f"http://127.0.0.1:{MOCK_PORT}/health", timeout=5).ok, message="the mock upstream")
        key = requests.post(stack.base_url + "/v1/keys", headers={"Authorization": f"Bearer {stack.key}"},
                            json={"name": "schemathesis"}, timeout=30).json()["key"]
        report = STATE / "logs" / "schemathesis.log"
        schemathesis = pathlib.Path(os.environ.get("TERN_VENV", pathlib.Path(__file__).resolve().parents[2] / ".tern" / "venv")) / "bin" / "schemathesis"
        result = subprocess.run(
            [str(schemathesis), "run", base + "/openapi.json", "--checks", CHECKS, "--max-examples", "60", "--seed", "1",
             "--workers", "2", "--request-timeout", "60", "--suppress-health-check", "all", "--no-color",
             "-H", f"Authorization: Bearer {key}"],
            capture_output=True, text=True, timeout=1800)
        report.write_text(result.stdout + result.stderr)
        summary = "\n".join(result.stdout.splitlines()[-40:])
        print(summary)
        assert result.returncode == 0, f"schemathesis found problems; see {report}\n{summary}"
        cases = sum(int(n) for n in re.findall(r"(\d+) generated", result.stdout))
        assert cases >= 1000, f"only {cases} generated cases\n{summary}"
    finally:
        stop_all(processes)
