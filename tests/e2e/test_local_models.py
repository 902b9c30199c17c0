"""The local model servers `tern up` runs: real embeddings from all-MiniLM-L6-v2 through the
queue, and a model server that dies is started again."""
import math
import os
import signal

import requests
from openai import OpenAI

from conftest import STATE, wait_until

EMBEDDING_MODEL = "all-minilm-l6-v2"
EMBEDDING_PORT = int(os.environ.get("TERN_EMBEDDING_PORT", "17082"))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def embed(stack, texts):
    sdk = OpenAI(base_url=stack.base_url + "/v1", api_key=stack.key, max_retries=0, timeout=120)
    return [item.embedding for item in sdk.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float").data]


def test_real_embeddings_place_similar_sentences_close(stack):
    cat, rug, physics = embed(stack, [
        "The cat sits on the mat", "A cat is sitting on a rug", "Quantum chromodynamics describes the strong force"])
    assert len(cat) == 384
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in (cat, rug, physics))
    assert cosine(cat, rug) > 0.6
    assert cosine(cat, physics) < 0.2


def test_a_model_server_that_dies_is_started_again(stack):
    pid = int((STATE / "run" / "llama-server-embeddings.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    # tern up notices within seconds and starts a new one on the same port.
    wait_until(lambda: int((STATE / "run" / "llama-server-embeddings.pid").read_text()) != pid
               and requests.get(f"http://127.0.0.1:{EMBEDDING_PORT}/health", timeout=5).ok,
               timeout=180, interval=0.5, message="the embedding server to be started again")
    assert len(embed(stack, ["back again"])[0]) == 384
