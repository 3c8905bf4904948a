"""The test API key never appears in a repr, str, log record or error of the suite (collected last)."""

from __future__ import annotations

import json

from module_ai import MissingAPIKeyError, load_registry
from tests import _secret_guard
from tests.conftest import TEST_API_KEY


def test_built_objects_never_show_the_key(tmp_path, dashscope_server):
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "chat": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b",
                 "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}", "no_think": True},
        "literal": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
                    "url": dashscope_server.base_url, "api_key": TEST_API_KEY},
    }}))
    reg = load_registry(tmp_path)
    chat, emb = reg.chat("chat"), reg.embeddings("literal")
    chat.invoke("hi")
    emb.embed_query("hi")
    for obj in (reg, chat, emb, reg.config("chat"), reg.config("literal")):
        assert TEST_API_KEY not in repr(obj) and TEST_API_KEY not in str(obj)
    assert TEST_API_KEY not in json.dumps(reg.config("literal").public_dict())
    assert TEST_API_KEY not in json.dumps(reg.check("literal"))


def test_http_errors_do_not_echo_the_key(tmp_path, dashscope_server):
    (tmp_path / "m.json").write_text(json.dumps({"model_type": "chat", "server_type": "openai",
                                                 "model": "qwen3-4b", "url": dashscope_server.base_url,
                                                 "api_key": TEST_API_KEY}))
    try:
        load_registry(tmp_path).chat("m").invoke("thinking on, non-streaming: a 400")
    except Exception as exc:  # the provider's error surfaces; the key must not
        assert TEST_API_KEY not in str(exc) and TEST_API_KEY not in repr(exc)
    else:
        raise AssertionError("expected the documented 400")


def test_no_log_record_or_error_of_the_suite_contains_the_key():
    try:
        raise MissingAPIKeyError("probe", model="m")
    except MissingAPIKeyError:
        pass
    assert _secret_guard.ERROR_MESSAGES, "the guard is not installed"
    leaked_logs = [line for line in _secret_guard.LOG_LINES if TEST_API_KEY in line]
    leaked_errors = [m for m in _secret_guard.ERROR_MESSAGES if TEST_API_KEY in m]
    assert not leaked_logs, leaked_logs[:3]
    assert not leaked_errors, leaked_errors[:3]
    url_password = _secret_guard.URL_PASSWORD  # tests/test_url_credentials.py puts it in URLs
    assert not [line for line in _secret_guard.LOG_LINES if url_password in line]
    assert not [m for m in _secret_guard.ERROR_MESSAGES if url_password in m]
    assert len(_secret_guard.LOG_LINES) > 0
