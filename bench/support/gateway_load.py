"""The streaming side of bench/gateway (non-streaming load is wrk's): prints one JSON line.

  gateway_load.py stream --url URL [--key KEY] --model M --streams 256 --tokens 50
      Starts that many streaming chat completions at once and times, for each, the first content
      token (TTFT) and the whole answer (until `data: [DONE]`). An answer that is not the mock's
      exact text counts as an error.
  gateway_load.py idle --url URL --key KEY --model M --streams 10000 --hold 12 --pid PID
      Opens that many streaming chat completions whose jobs never get a worker (a few hundred
      connects in flight at a time), holds them all open for --hold seconds (past the 10 s
      heartbeat), and reports how many are still open and well, and the server's memory (VmRSS
      of PID) before and while it holds them.
"""
import argparse
import asyncio
import json
import resource
import sys
import time

import aiohttp

from load_client import percentile, read_chat_stream


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def expected_answer(tokens):
    """`tern mock-llm`'s answer of that many pieces."""
    return "".join("Mock answer" if i == 0 else f" token {i}" for i in range(tokens))


def headers(key):
    result = {"Content-Type": "application/json"}
    if key:
        result["Authorization"] = f"Bearer {key}"
    return result


def chat_body(model, stream=True):
    return json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hello, how are you?"}]})


def session(limit_timeout):
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=limit_timeout))


async def one_stream(client, url, key, model, answer, barrier):
    await barrier.wait()
    start = time.perf_counter()
    first = None
    text = []
    try:
        async with client.post(url, data=chat_body(model), headers=headers(key)) as response:
            if response.status != 200:
                return {"error": f"HTTP {response.status}: {(await response.text())[:200]}"}
            def on_piece(piece):
                nonlocal first
                if first is None:
                    first = time.perf_counter()
                text.append(piece)

            done, _, error = await read_chat_stream(response, on_piece)
            if error:
                return {"error": error}
            end = time.perf_counter()
    except Exception as error:  # a broken connection, a timeout
        return {"error": f"{type(error).__name__}: {error}"[:200]}
    if not done:
        return {"error": "the stream ended without [DONE]"}
    if "".join(text) != answer:
        return {"error": f"unexpected answer: {''.join(text)[:100]!r}"}
    return {"ttft": (first - start) * 1000, "total": (end - start) * 1000}


async def stream_command(args):
    answer = expected_answer(args.tokens)
    barrier = asyncio.Barrier(args.streams)
    async with session(args.timeout) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, args.url, args.key, args.model, answer, barrier) for _ in range(args.streams)))
        wall = time.perf_counter() - started
    good = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    ttft = [r["ttft"] for r in good]
    total = [r["total"] for r in good]
    print(json.dumps({
        "streams": args.streams, "ok": len(good), "errors": len(errors), "first_error": errors[0] if errors else None,
        "ttft_p50_ms": round(percentile(ttft, 50) or 0, 2), "ttft_p99_ms": round(percentile(ttft, 99) or 0, 2),
        "total_p50_ms": round(percentile(total, 50) or 0, 2), "total_p99_ms": round(percentile(total, 99) or 0, 2),
        "wall_s": round(wall, 2),
    }))


class IdleStream:
    """One held stream: opened (the head and the first event came), heartbeats seen, how it ended."""

    def __init__(self):
        self.opened = False
        self.heartbeats = 0
        self.ended = None  # why it stopped early, if it did
        self.opened_event = asyncio.Event()


async def hold_stream(client, args, gate, state):
    try:
        async with gate:
            response = await client.post(args.url, data=chat_body(args.model), headers=headers(args.key))
            if response.status != 200:
                state.ended = f"HTTP {response.status}"
                response.release()
                return
            first = await response.content.readline()
            if not first:
                state.ended = "closed before the first event"
                return
            state.opened = True
        state.opened_event.set()
        async with response:
            async for line in response.content:
                if line.startswith(b": keep-alive"):
                    state.heartbeats += 1
                elif line.startswith(b"data:") and b'"error"' in line:
                    state.ended = f"error event: {line[:200].decode(errors='replace').strip()}"
                    return
                elif line.startswith(b"data: [DONE]"):
                    state.ended = "the stream finished (a worker ran the job?)"
                    return
            state.ended = "the server closed the stream"
    except asyncio.CancelledError:
        raise
    except Exception as error:
        state.ended = f"{type(error).__name__}: {error}"[:200]
    finally:
        state.opened_event.set()


async def idle_command(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(args.pid)
    gate = asyncio.Semaphore(args.parallel)
    states = [IdleStream() for _ in range(args.streams)]
    async with session(None) as client:
        started = time.perf_counter()
        tasks = [asyncio.create_task(hold_stream(client, args, gate, state)) for state in states]
        deadline = started + args.open_timeout
        for state in states:
            try:
                await asyncio.wait_for(state.opened_event.wait(), max(0.01, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                pass
        open_seconds = time.perf_counter() - started
        opened = sum(1 for s in states if s.opened)
        await asyncio.sleep(args.hold)
        held_rss = rss_kib(args.pid)
        held = [s for s in states if s.opened and s.ended is None]
        with_heartbeat = sum(1 for s in held if s.heartbeats > 0)
        failures = {}
        for s in states:
            if s.ended is not None or not s.opened:
                reason = s.ended or "not opened in time"
                failures[reason] = failures.get(reason, 0) + 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    grown = held_rss - before
    print(json.dumps({
        "streams": args.streams, "opened": opened, "held": len(held), "with_heartbeat": with_heartbeat,
        "open_s": round(open_seconds, 1), "hold_s": args.hold,
        "rss_before_kib": before, "rss_held_kib": held_rss,
        "kib_per_stream": round(grown / len(held), 1) if held else None,
        "failures": dict(sorted(failures.items(), key=lambda kv: -kv[1])[:5]),
    }))


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    stream = commands.add_parser("stream")
    idle = commands.add_parser("idle")
    for command in (stream, idle):
        command.add_argument("--url", required=True)
        command.add_argument("--key", default="")
        command.add_argument("--model", required=True)
        command.add_argument("--streams", type=int, required=True)
    stream.add_argument("--tokens", type=int, default=50)
    stream.add_argument("--timeout", type=float, default=300)
    idle.add_argument("--hold", type=float, default=12)
    idle.add_argument("--pid", type=int, required=True)
    idle.add_argument("--parallel", type=int, default=200, help="connects in flight at once")
    idle.add_argument("--open-timeout", type=float, default=300)
    args = parser.parse_args()
    asyncio.run(stream_command(args) if args.command == "stream" else idle_command(args))


if __name__ == "__main__":
    sys.exit(main())
