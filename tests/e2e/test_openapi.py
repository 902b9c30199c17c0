"""Schemathesis (a client no one here wrote) generates requests from /openapi.json, valid and
invalid, and checks every answer against the document: no 5xx, only documented statuses,
content types, headers and bodies. The API runs with its workers and the mock upstream, so
generated chat completions and embeddings really run through the queue."""
import os
import pathlib
import re
import subprocess

import requests

from conftest import STATE, side_stack

MOCK_PORT = 17095
API_PORT = 18086
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"


def test_every_generated_request_gets_a_documented_answer(stack):
    settings = {"TERN_LLM_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1", "TERN_LLM_MODEL": "mock",
                "TERN_EMBEDDING_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}/v1", "TERN_EMBEDDING_UPSTREAM_MODEL": "mock",
                "TERN_RATE_LIMIT_KEY_RPM": "0", "TERN_RATE_LIMIT_USER_RPM": "0", "TERN_RATE_LIMIT_KEY_TPM": "0",
                "TERN_RATE_LIMIT_USER_TPM": "0", "TERN_BCRYPT_COST": "4"}
    with side_stack("openapi", settings, MOCK_PORT, API_PORT, mock_arguments=("--tokens", "4"), worker_concurrency=8) as base:
        key = requests.post(stack.base_url + "/v1/keys", headers={"Authorization": f"Bearer {stack.key}"},
                            json={"name": "schemathesis"}, timeout=30).json()["key"]
        report = STATE / "logs" / "schemathesis.log"
        schemathesis = pathlib.Path(os.environ.get("TERN_VENV", pathlib.Path(__file__).resolve().parents[2] / ".tern" / "venv")) / "bin" / "schemathesis"
        result = subprocess.run(
            [str(schemathesis), "run", base + "/openapi.json", "--checks", CHECKS, "--max-examples", "60", "--seed", "1",
             "--workers", "1", "--request-timeout", "60", "--suppress-health-check", "all", "--no-color",
             "-H", f"Authorization: Bearer {key}"],
            capture_output=True, text=True, timeout=1800)
        report.write_text(result.stdout + result.stderr)
        summary = "\n".join(result.stdout.splitlines()[-40:])
        print(summary)
        assert result.returncode == 0, f"schemathesis found problems; see {report}\n{summary}"
        cases = sum(int(n) for n in re.findall(r"(\d+) generated", result.stdout))
        assert cases >= 1000, f"only {cases} generated cases\n{summary}"
