"""The official openai SDK against Tern, answered by the real local model through the queue."""
import uuid

import openai
import pytest
from openai import OpenAI

from conftest import MODEL, psql, wait_until


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
    assert [m.id for m in client(stack).models.list()] == [MODEL]


def test_errors_reach_the_sdk_as_typed_exceptions(stack):
    with pytest.raises(openai.AuthenticationError):
        client(stack, key="tern_not_a_key").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as not_found:
        client(stack).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client(stack).chat.completions.create(model=MODEL, messages=[])
    assert bad.value.body["param"] == "messages"
