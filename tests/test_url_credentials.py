"""A password inside a URL (https://user:password@host/v1) is sent as Basic auth and shown nowhere:
not in `models` / `models --json`, reprs, errors, the usage log, httpx's logs or milvus.json."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from module_ai import BackendError, ConfigError, load_registry, track_usage
from tests import _secret_guard
from tests.servers import fake_dashscope

PASSWORD = _secret_guard.URL_PASSWORD
ROOT = Path(__file__).resolve().parents[1]


def _with_password(url: str) -> str:
    return url.replace("http://", f"http://bob:{PASSWORD}@", 1)


def _configs(folder: Path, url: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "m.json").write_text(json.dumps({"models": {
        "c": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": url, "no_think": True},
        "e": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4", "url": url},
    }}), encoding="utf-8")
    return folder


@pytest.fixture()
def open_server():
    srv = fake_dashscope.start(None)  # no key required: we look at what arrives
    yield srv
    srv.stop()


def test_url_password_goes_as_basic_auth_and_is_never_shown(tmp_path, open_server, caplog):
    reg = load_registry(_configs(tmp_path / "cfg", _with_password(open_server.base_url)))
    log = tmp_path / "usage.jsonl"
    with caplog.at_level(logging.DEBUG), track_usage(log_path=log):
        chat, emb = reg.chat("c"), reg.embeddings("e")
        assert chat.invoke("hi").content
        assert len(emb.embed_query("hi")) > 0
    basic = "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    assert {r.headers.get("authorization") for r in open_server.requests} == {basic}  # Bearer not mixed in
    shown = [repr(reg), repr(chat), str(chat), repr(emb), repr(reg.config("c")), str(reg.config("c")),
             json.dumps(reg.config("c").public_dict()), log.read_text(encoding="utf-8"), caplog.text]
    assert all(PASSWORD not in text for text in shown)
    assert "bob:****@" in repr(reg.config("c")) and "bob:****@" in json.dumps(reg.config("c").public_dict())


def test_errors_and_cli_output_mask_the_url_password(tmp_path, open_server):
    dead = _with_password(open_server.base_url).replace(str(open_server.port), "9")  # nothing listens on :9
    folder = _configs(tmp_path / "cfg", dead)
    with pytest.raises(BackendError) as err:
        load_registry(folder).chat("c", max_retries=0).invoke("hi")
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(err.value)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for args in (["models"], ["models", "--json"], ["check", "c"]):
        proc = subprocess.run([sys.executable, "-m", "module_ai", "--config", str(folder), *args], check=False,
                              env=env, capture_output=True, text=True, timeout=120)
        assert PASSWORD not in proc.stdout + proc.stderr, args
        assert "Traceback" not in proc.stderr
    assert "bob:****@" in proc.stdout + proc.stderr or "127.0.0.1" in proc.stdout + proc.stderr


def test_url_credentials_beside_an_api_key_are_refused(tmp_path):
    (tmp_path / "both.json").write_text(json.dumps({
        "model_type": "chat", "server_type": "openai", "model": "m", "url": f"https://bob:{PASSWORD}@h/v1",
        "api_key": "${MODULE_AI_TEST_KEY}"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="only one Authorization") as err:
        load_registry(tmp_path / "both.json", builtin=False)
    assert PASSWORD not in str(err.value)


def test_milvus_uri_password_becomes_a_token_that_is_never_saved(tmp_path):
    from module_ai.retrieval.milvus._kbsupport import write_local
    from module_ai.retrieval.milvus.config import MilvusConfig

    cfg = MilvusConfig(uri=f"https://bob:{PASSWORD}@milvus.example:19530")
    assert cfg.uri == "https://milvus.example:19530" and cfg.resolved_token() == f"bob:{PASSWORD}"
    write_local(tmp_path, cfg)
    for text in (repr(cfg), json.dumps(cfg.public_dict()), (tmp_path / "milvus.json").read_text()):
        assert PASSWORD not in text
    with pytest.raises(ValueError, match="token is set"):
        MilvusConfig(uri=f"https://bob:{PASSWORD}@m:19530", token="x")
