"""`tern queue status`: the stack's queue shows its live workers; a queue with jobs and no
worker is reported as such (and the command exits 3, for monitoring)."""
import os
import subprocess
import uuid

from conftest import ROOT, TERN

DRILL = str(ROOT / ".build" / "debug" / "QueueDrill")
REDIS_URL = f"redis://127.0.0.1:{os.environ.get('TERN_REDIS_PORT', '17379')}"


def status(queue):
    env = {k: v for k, v in os.environ.items() if k != "TERN_REDIS_URL"}
    env["TERN_QUEUE"] = queue
    return subprocess.run([TERN, "queue", "status"], env=env, capture_output=True, text=True, timeout=60)


def test_the_stacks_queue_has_live_workers(stack):
    result = status("chat")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "live workers: 2, running job types: chat" in result.stdout


def test_a_queue_without_workers_is_reported(stack):
    queue = f"orphan-{uuid.uuid4().hex[:8]}"
    subprocess.run([DRILL, "enqueue", "--redis", REDIS_URL, "--queue", queue, "--count", "3"], check=True, capture_output=True)
    result = status(queue)
    assert result.returncode == 3
    assert "ready 3" in result.stdout
    assert "WARNING: 3 jobs are waiting and no worker is alive" in result.stdout
