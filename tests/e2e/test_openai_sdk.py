"""The official openai SDK against Tern, answered by the real local model through the queue."""
import uuid

import openai
import pytest
import requests
from openai import OpenAI

from conftest import MODEL, psql, side_stack, wait_until


def client(stack, key=None):
    return OpenAI(base_url=stack.base_url + "/v1", api_key=key or stack.key, max_retries=0, timeout=300)


def assert_stored(job_id, answer):
    """The job ran once through a worker, and its answer is in PostgreSQL. The worker stores it
    just after the stream's last event, so this waits for it."""
    job_id = str(uuid.UUID(job_id))
    rows = wait_until(lambda: psql(f"SELECT j.status, j.attempts, m.content FROM jobs j JOIN messages m ON m.job_id = j.id "
                                   f"WHERE j.id = '{job_id}' AND m.role = 'assistant'"), timeout=60, message="the stored answer")
    assert len(rows) == 1
    status, attempts, content = rows[0]
    assert status == "completed" and attempts == "1"
    assert content.strip() == answer.strip()


def test_streamed_completion_from_the_local_model(stack):
    stream = client(stack).chat.completions.create(
        model=MODEL, stream=True, max_tokens=32, temperature=0,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name three colours."}])
    pieces, finish, usage, ids = [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    answer = "".join(pieces)
    assert len(pieces) > 3, "the answer should arrive as many chunks"
    assert answer.strip() and "Mock answer" not in answer
    assert finish in ("stop", "length")
    assert usage and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert len(ids) == 1
    assert_stored(ids.pop().removeprefix("chatcmpl-"), answer)


def test_non_streamed_completion_from_the_local_model(stack):
    completion = client(stack).chat.completions.create(
        model=MODEL, max_tokens=24, temperature=0, messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}])
    answer = completion.choices[0].message.content
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert answer.strip() and "Mock answer" not in answer
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert_stored(completion.id.removeprefix("chatcmpl-"), answer)


def test_models_are_listed(stack):
    assert [m.id for m in client(stack).models.list()] == [MODEL, EMBEDDING_MODEL]


def test_errors_reach_the_sdk_as_typed_exceptions(stack):
    with pytest.raises(openai.AuthenticationError):
        client(stack, key="tern_not_a_key").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as not_found:
        client(stack).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client(stack).chat.completions.create(model=MODEL, messages=[])
    assert bad.value.body["param"] == "messages"


EMBEDDING_MODEL = "all-minilm-l6-v2"
SIDE_MOCK_PORT = 17094
SIDE_API_PORT = 18085


@pytest.fixture(scope="module")
def side_api(stack):
    """A second API instance and worker on their own queue, with the mock as the embedding
    upstream (deterministic vectors) and a tight rate limit (6 a minute, 5 back to back), for the
    SDK's embeddings and rate-limit checks."""
    settings = {"TERN_LLM_BASE_URL": f"http://127.0.0.1:{SIDE_MOCK_PORT}/v1", "TERN_LLM_MODEL": "mock",
                "TERN_EMBEDDING_BASE_URL": f"http://127.0.0.1:{SIDE_MOCK_PORT}/v1", "TERN_EMBEDDING_UPSTREAM_MODEL": "mock",
                "TERN_RATE_LIMIT_KEY_RPM": "6", "TERN_RATE_LIMIT_BURST": "5"}
    with side_stack("sdk", settings, SIDE_MOCK_PORT, SIDE_API_PORT) as base:
        yield base


def fresh_key(stack):
    """A new API key of the stack's user, so each test has its own rate limit."""
    created = requests.post(stack.base_url + "/v1/keys", headers={"Authorization": f"Bearer {stack.key}"},
                            json={"name": f"sdk-{uuid.uuid4().hex[:6]}"}, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["key"]


def test_embeddings_through_the_queue(stack, side_api):
    sdk = OpenAI(base_url=side_api + "/v1", api_key=fresh_key(stack), max_retries=0, timeout=120)
    assert EMBEDDING_MODEL in [m.id for m in sdk.models.list()]
    texts = ["The tern is a seabird.", "Terns migrate far."]
    # The SDK asks for base64 unless told otherwise, and decodes it.
    packed = sdk.embeddings.create(model=EMBEDDING_MODEL, input=texts)
    plain = sdk.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert [item.index for item in packed.data] == [0, 1]
    for a, b in zip(packed.data, plain.data):
        assert len(a.embedding) == 384
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6
    assert packed.data[0].embedding != packed.data[1].embedding
    assert abs(sum(x * x for x in plain.data[0].embedding) - 1) < 1e-3  # the mock's vectors are unit vectors
    assert plain.usage.prompt_tokens == plain.usage.total_tokens == 8
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="text-embedding-3-small", input="x")


def test_a_rate_limit_reaches_the_sdk_with_retry_after(stack, side_api):
    sdk = OpenAI(base_url=side_api + "/v1", api_key=fresh_key(stack), max_retries=0, timeout=60)
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(20):
            sdk.models.list()
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.code == "rate_limit_exceeded"
