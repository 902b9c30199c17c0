"""The client side of bench/generation: prints one JSON line.

  generation_load.py --url URL [--key KEY] --model M --concurrency C --requests N --max-tokens T [--think-ms MS]

Runs N streaming chat completions, C at a time (each client starts its next request when its
last one ended, after a think time drawn uniformly from 0 to --think-ms, the same draws for
every run), all with the same prompt at temperature 0, and times for each the first content
token (TTFT) and the whole answer. Tokens are the usage the stream reports
(`stream_options.include_usage`), or the content pieces where it reports none. Throughput is
all completion tokens over the wall time of the whole point.
"""
import argparse
import asyncio
import json
import random
import time

import aiohttp

from load_client import percentile, read_chat_stream

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


async def one_request(client, args):
    body = {
        "model": args.model, "stream": True, "max_tokens": args.max_tokens, "temperature": 0, "seed": 42,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": PROMPT}],
    }
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    start = time.perf_counter()
    first = None
    pieces = 0
    try:
        async with client.post(args.url, data=json.dumps(body), headers=headers) as response:
            if response.status != 200:
                return {"error": f"HTTP {response.status}: {(await response.text())[:200]}"}

            def on_piece(_):
                nonlocal first, pieces
                pieces += 1
                if first is None:
                    first = time.perf_counter()

            done, usage, error = await read_chat_stream(response, on_piece)
            if error:
                return {"error": error}
            end = time.perf_counter()
    except Exception as error:  # a broken connection, a timeout
        return {"error": f"{type(error).__name__}: {error}"[:200]}
    if not done or first is None:
        return {"error": "the stream ended without [DONE] or without any text"}
    tokens = (usage or {}).get("completion_tokens") or pieces
    return {"ttft": (first - start) * 1000, "total": (end - start) * 1000, "tokens": tokens}


async def client_loop(client, args, count, results, index):
    think = random.Random(index)
    for _ in range(count):
        if args.think_ms > 0:
            await asyncio.sleep(think.uniform(0, args.think_ms) / 1000)
        results.append(await one_request(client, args))


async def main(args):
    # A new connection per request for both sides: llama-server closes idle keep-alive
    # connections, and a request sent on one as it closes fails.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=args.timeout)) as client:
        results = []
        shares = [args.requests // args.concurrency + (1 if i < args.requests % args.concurrency else 0) for i in range(args.concurrency)]
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, args, n, results, i) for i, n in enumerate(shares)))
        wall = time.perf_counter() - started
    good = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    tokens = sum(r["tokens"] for r in good)
    ttft = [r["ttft"] for r in good]
    print(json.dumps({
        "requests": args.requests, "ok": len(good), "errors": len(errors), "first_error": errors[0] if errors else None,
        "tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2) if wall > 0 else 0,
        "ttft_p50_ms": round(percentile(ttft, 50) or 0, 2), "ttft_p99_ms": round(percentile(ttft, 99) or 0, 2),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--think-ms", type=float, default=0)
    parser.add_argument("--timeout", type=float, default=600)
    asyncio.run(main(parser.parse_args()))
