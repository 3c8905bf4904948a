"""`module-ai models` and `module-ai check` through the entry point, including error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from module_ai.cli import main


def run_cli(*argv: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "module_ai", *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_models_table_and_json_mask_keys(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY_VAR", "sk-should-never-print-1234567890")
    (tmp_path / "a.json").write_text(json.dumps({"model_type": "chat", "server_type": "openai", "model": "m",
                                                 "url": "http://127.0.0.1:1/v1",
                                                 "api_key": "sk-literal-never-print-0987654321"}))
    (tmp_path / "b.json").write_text(json.dumps({"model_type": "chat", "server_type": "openai", "model": "n",
                                                 "url": "http://127.0.0.1:1/v1", "api_key": "${MY_SECRET_KEY_VAR}"}))
    assert main(["--config", str(tmp_path), "models"]) == 0
    table = capsys.readouterr().out
    assert "a" in table and "openai" in table and "sk-" not in table
    assert main(["--config", str(tmp_path), "models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    data = [d for d in data if d["name"] in ("a", "b")]
    assert [d["name"] for d in data] == ["a", "b"]
    assert data[0]["api_key"] == "**********" and data[1]["api_key"] == "${MY_SECRET_KEY_VAR}"


def test_shipped_configs_list_through_entry_point():
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {d["name"] for d in json.loads(proc.stdout)}
    assert {"qwen3-4b", "text-embedding-v4", "minilm", "deepseek-chat", "qwen3-ollama", "qwen3-gguf"} <= names


def test_check_embedded_default_model():
    proc = run_cli("check", "minilm", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["found"]["dimensions"] == 384


@pytest.mark.parametrize("argv, expected", [
    (["check", "nope"], "no model named 'nope'"),
    (["--config", "/does/not/exist", "models"], "does not exist"),
    (["--config", "tests/data/bad_configs/bad_server_type.json", "models"], "server_type"),
    (["frobnicate"], "invalid choice"),
])
def test_user_mistakes_are_one_line_exit_1(argv, expected):
    proc = run_cli(*argv)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr


def test_check_unreachable_server_reports_and_fails(tmp_path):
    (tmp_path / "dead.json").write_text(json.dumps({"model_type": "chat", "server_type": "openai", "model": "m",
                                                    "url": "http://127.0.0.1:9/v1"}))
    proc = run_cli("--config", str(tmp_path), "check", "dead")
    assert proc.returncode == 1 and "FAIL dead" in proc.stdout and "Traceback" not in proc.stderr
