"""A model catalogue file (TERN_MODELS_FILE) run by real processes: a chat model whose first
deployment is down falls back to the next, and a long conversation is trimmed to the model's
context window before it reaches the upstream."""
import json

import pytest
import requests

from conftest import STATE, side_stack

MOCK_PORT = 17096
API_PORT = 18087


@pytest.fixture(scope="module")
def catalogue_api(stack):
    catalogue = {
        "chat": [{"name": "fallback-chat", "context_window": 100, "deployments": [
            {"name": "down", "base_url": "http://127.0.0.1:1/v1", "model": "mock", "slots": 2},
            {"name": "mock", "base_url": f"http://127.0.0.1:{MOCK_PORT}/v1", "model": "mock", "slots": 2,
             "api_key_env": "CATALOGUE_TEST_KEY"}]}],
        "embedding": [{"name": "catalogue-embed", "deployments": [
            {"base_url": f"http://127.0.0.1:{MOCK_PORT}/v1", "model": "mock"}]}],
    }
    path = STATE / "models-test.json"
    path.write_text(json.dumps(catalogue))
    settings = {"TERN_MODELS_FILE": str(path), "CATALOGUE_TEST_KEY": "not-a-real-key", "TERN_LLM_ATTEMPTS": "1"}
    with side_stack("catalogue", settings, MOCK_PORT, API_PORT) as base:
        yield base


def chat(base, key, messages):
    return requests.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "fallback-chat", "max_tokens": 5, "messages": messages}, timeout=120)


def test_the_catalogue_names_the_models(stack, catalogue_api):
    models = requests.get(catalogue_api + "/v1/models", headers={"Authorization": f"Bearer {stack.key}"}, timeout=30).json()
    assert [m["id"] for m in models["data"]] == ["fallback-chat", "catalogue-embed"]


def test_a_dead_first_deployment_falls_back_and_old_turns_are_trimmed(stack, catalogue_api):
    turn = "word " * 30
    answer = chat(catalogue_api, stack.key, [
        {"role": "user", "content": turn}, {"role": "assistant", "content": turn}, {"role": "user", "content": turn}])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"].startswith("Mock answer")
    # The mock counts the words it was sent: only the newest turn fitted the window of 100 tokens.
    assert body["usage"]["prompt_tokens"] == 30


def test_a_message_larger_than_the_window_is_refused(stack, catalogue_api):
    answer = chat(catalogue_api, stack.key, [{"role": "user", "content": "word " * 200}])
    assert answer.status_code >= 400
    assert "context_length_exceeded" in answer.text
