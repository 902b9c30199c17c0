"""Time to first token of two sides taken in turns, for bench/generation: prints one JSON line.

  generation_ttft.py --pairs N --max-tokens T --direct URL MODEL --tern URL KEY MODEL

One request at a time, direct then Tern (the same prompt, streaming, temperature 0), N times
over: both sides see the same moments of a machine whose speed drifts, so the difference of
their medians is Tern's own part, not the drift between two separate runs. Also the median of
each pair's own difference (`added_paired_p50_ms`).
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
    ttft = {"direct": [], "tern": []}
    differences = []  # each pair's Tern − direct, where both answered
    errors = {"direct": 0, "tern": 0}
    first_error = None
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # as generation_load.py
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as client:
        for _ in range(args.pairs):
            pair = {}
            for side, request in sides.items():
                result = await one_request(client, request)
                if "error" in result:
                    errors[side] += 1
                    first_error = first_error or f"{side}: {result['error']}"
                else:
                    ttft[side].append(result["ttft"])
                    pair[side] = result["ttft"]
            if len(pair) == 2:
                differences.append(pair["tern"] - pair["direct"])
    direct, tern = percentile(ttft["direct"], 50) or 0, percentile(ttft["tern"], 50) or 0
    print(json.dumps({
        "pairs": args.pairs, "errors": errors, "first_error": first_error,
        "direct_ttft_p50_ms": round(direct, 2), "tern_ttft_p50_ms": round(tern, 2), "added_ms": round(tern - direct, 2),
        "added_paired_p50_ms": round(percentile(differences, 50) or 0, 2),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--direct", nargs=2, metavar=("URL", "MODEL"), required=True)
    parser.add_argument("--tern", nargs=3, metavar=("URL", "KEY", "MODEL"), required=True)
    asyncio.run(main(parser.parse_args()))
