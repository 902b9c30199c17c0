"""Direct and Tern requests taken in turns, for bench/generation: prints one JSON line.

  generation_turns.py --pairs N --max-tokens T --direct URL MODEL --tern URL KEY MODEL

One request at a time, a direct one and a Tern one (the same prompt, streaming, temperature 0;
which side goes first alternates), N times over: both sides see the same moments of a machine
whose speed drifts, so their difference is Tern's own part, not the drift between two separate
runs. Per side: the time to first token (p50) and the throughput (all completion tokens over
the requests' summed times); per pair: the median of each pair's own first-token difference
(`added_paired_p50_ms`) and of its throughput ratio (`throughput_ratio_paired_p50`).
"""
import argparse
import asyncio
import json
from types import SimpleNamespace

import aiohttp

from generation_load import one_request
from load_client import percentile


async def main(args):
    sides = {
        "direct": SimpleNamespace(url=args.direct[0], key="", model=args.direct[1], max_tokens=args.max_tokens),
        "tern": SimpleNamespace(url=args.tern[0], key=args.tern[1], model=args.tern[2], max_tokens=args.max_tokens),
    }
    answered = {"direct": [], "tern": []}
    differences, ratios = [], []  # each pair's Tern − direct first token and Tern ÷ direct tokens/s, where both answered
    errors = {"direct": 0, "tern": 0}
    first_error = None
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # as generation_load.py
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as client:
        for index in range(args.pairs):
            pair = {}
            for side in ("direct", "tern") if index % 2 == 0 else ("tern", "direct"):
                result = await one_request(client, sides[side])
                if "error" in result:
                    errors[side] += 1
                    first_error = first_error or f"{side}: {result['error']}"
                else:
                    answered[side].append(result)
                    pair[side] = result
            if len(pair) == 2:
                differences.append(pair["tern"]["ttft"] - pair["direct"]["ttft"])
                ratios.append(tokens_per_s([pair["tern"]]) / tokens_per_s([pair["direct"]]))
    figures = {}
    for side, results in answered.items():
        figures[f"{side}_ttft_p50_ms"] = round(percentile([r["ttft"] for r in results], 50) or 0, 2)
        figures[f"{side}_tokens_per_s"] = round(tokens_per_s(results), 2)
    print(json.dumps({
        "pairs": args.pairs, "errors": errors, "first_error": first_error, **figures,
        "added_ms": round(figures["tern_ttft_p50_ms"] - figures["direct_ttft_p50_ms"], 2),
        "added_paired_p50_ms": round(percentile(differences, 50) or 0, 2),
        "throughput_ratio": round(figures["tern_tokens_per_s"] / figures["direct_tokens_per_s"], 4) if figures["direct_tokens_per_s"] else 0,
        "throughput_ratio_paired_p50": round(percentile(ratios, 50) or 0, 4),
    }))


def tokens_per_s(results):
    seconds = sum(r["total"] for r in results) / 1000
    return sum(r["tokens"] for r in results) / seconds if seconds > 0 else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--direct", nargs=2, metavar=("URL", "MODEL"), required=True)
    parser.add_argument("--tern", nargs=3, metavar=("URL", "KEY", "MODEL"), required=True)
    asyncio.run(main(parser.parse_args()))
