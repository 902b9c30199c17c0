"""Celery's side of bench/queue: a no-op task on the Redis broker, a producer, and the same
measurements QueueDrill makes for Tern (jobs done, enqueue-to-start latency)."""
import os
import sys
import time

import redis
from celery import Celery

PORT = int(os.environ.get("BENCH_REDIS_PORT", "7397"))
store = redis.Redis(host="127.0.0.1", port=PORT, db=1)
app = Celery("celery_drill", broker=f"redis://127.0.0.1:{PORT}/0")
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


def microseconds():
    return int(time.time() * 1_000_000)


@app.task(name="drill.noop")
def noop(sent, record):
    if record:
        store.rpush("latency-us", microseconds() - sent)
    store.incr("done")


def produce(count, interval_ms, record):
    for _ in range(count):
        noop.apply_async(args=(microseconds(), record))
        if interval_ms:
            time.sleep(interval_ms / 1000)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "produce":
        produce(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "record")
    elif command == "wait":  # until `count` tasks are done, or the timeout
        count, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
        while int(store.get("done") or 0) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        print(int(store.get("done") or 0))
