"""Chaos for the job queue (QueueDrill processes on a Redis of their own, AOF with fsync on
every write): 10,000 jobs, 4 worker processes, one of them SIGKILLed and restarted every
1.5 seconds while the jobs run; then the same again with Redis itself killed and restarted in the
middle. Every job completes, and its completion is recorded exactly once; none is left ready,
delayed, active or failed. The counts are printed (pytest -s shows them)."""
import json
import random
import shutil
import subprocess
import time
import uuid

from conftest import ROOT, STATE, wait_until

DRILL = str(ROOT / ".build" / "debug" / "QueueDrill")
PORT = 17395
JOBS = 10_000
WORKERS = 4


class Redis:
    def __init__(self):
        self.dir = STATE / "chaos-redis"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(PORT), "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=open(self.dir / "redis.log", "a"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(PORT), "ping"], capture_output=True, text=True).stdout.strip() == "PONG",
                   message="chaos redis")

    def kill(self):
        self.process.kill()
        self.process.wait()


def drill(queue, *arguments):
    return [DRILL, *arguments, "--redis", f"redis://127.0.0.1:{PORT}", "--queue", queue, "--lease-ms", "2000"]


def stats(queue):
    result = subprocess.run(drill(queue, "stats"), capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout) if result.returncode == 0 else None


def run_chaos(restart_redis):
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    redis = Redis()
    redis.start()
    logs = STATE / "logs"

    def worker(index):
        return subprocess.Popen(drill(queue, "work", "--concurrency", "16", "--work-ms", "50", "--count-runs"),
                                stdout=open(logs / f"chaos-worker-{index}.log", "a"), stderr=subprocess.STDOUT)

    workers = [worker(index) for index in range(WORKERS)]
    producer = subprocess.Popen(drill(queue, "enqueue", "--count", str(JOBS), "--parallel", "16"),
                                stdout=open(logs / "chaos-producer.log", "a"), stderr=subprocess.STDOUT)
    kills, redis_restarted = 0, False
    deadline = time.monotonic() + 900
    try:
        while True:
            current = stats(queue)
            if current and current["completed"] >= JOBS and producer.poll() is not None:
                break
            assert time.monotonic() < deadline, f"the drill did not finish: {current}"
            time.sleep(1.5)  # the chaos cadence: a worker dies every 1.5 seconds
            victim = random.randrange(WORKERS)
            workers[victim].kill()
            workers[victim].wait()
            workers[victim] = worker(victim)
            kills += 1
            if restart_redis and not redis_restarted and current and current["completed"] > JOBS // 3:
                redis.kill()
                redis.start()
                redis_restarted = True
        assert producer.wait() == 0, "the producer gave up on an enqueue"
        final = wait_until(lambda: stats(queue), message="final stats")
        print(f"\nchaos (redis restarted: {redis_restarted}): {JOBS} jobs, {kills} worker kills, "
              f"{final['runs']} runs, {final['totals'].get('stalled', 0)} redeliveries after a dead lease, "
              f"{final['completed']} completed, {final['failed']} failed, "
              f"ready/delayed/active left: {final['ready']}/{final['delayed']}/{final['active']}")
        assert final["completed"] == JOBS
        assert final["totals"]["completed"] == JOBS  # one recorded completion per job, none twice
        assert final["totals"]["enqueued"] == JOBS
        assert (final["failed"], final["ready"], final["delayed"], final["active"]) == (0, 0, 0, 0)
        assert final["runs"] >= JOBS
        assert kills >= 3
        assert redis_restarted == restart_redis
    finally:
        for process in workers + [producer]:
            if process.poll() is None:
                process.kill()
                process.wait()
        redis.kill()


def test_every_job_completes_once_while_workers_are_killed():
    run_chaos(restart_redis=False)


def test_no_enqueued_job_is_lost_when_redis_restarts():
    run_chaos(restart_redis=True)
