"""What the bench load clients share: reading a streamed chat completion (Server-Sent Events)
and percentiles."""
import json
import math


def percentile(values, p):
    """Nearest rank, as bench/queue: the smallest value with at least p% of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]


async def read_chat_stream(response, on_piece):
    """Reads an OpenAI-format stream from an aiohttp response, calling `on_piece(text)` for each
    piece of content. Returns (done, usage, error): whether `data: [DONE]` came, the usage the
    stream reported (or None), and an error event's text (or None; reading stops there)."""
    usage = None
    async for line in response.content:
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return True, usage, None
        chunk = json.loads(data)
        if "error" in chunk:
            return False, usage, f"error event: {json.dumps(chunk)[:200]}"
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                on_piece(piece)
    return False, usage, None
