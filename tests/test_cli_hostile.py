"""The CLI under bad input: every invocation below ends in one line on stderr and exit code 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINARY = bytes(range(256)) * 8
LATIN1 = "model_type: chat\nserver_type: ollama\nmodel: caf\xe9\n".encode("latin-1")
CHAT = {"model_type": "chat", "server_type": "openai", "model": "m", "url": "http://127.0.0.1:9/v1"}


def _kb_with_manifest(d: Path, change: Callable[[dict], object]) -> Path:
    from langchain_core.documents import Document

    from module_ai.retrieval import KnowledgeBase
    from module_ai.retrieval._testing import HashingEmbeddings

    KnowledgeBase.build([Document("文本", metadata={"source": "s"})], d / "kb", HashingEmbeddings(size=8),
                        embedding_model_name="minilm", show_progress=False)
    manifest = json.loads((d / "kb" / "manifest.json").read_text())
    new = change(manifest)
    (d / "kb" / "manifest.json").write_text(json.dumps(manifest if new is None else new))
    return d / "kb"


def _setup(d: Path) -> None:
    (d / "bin.json").write_bytes(BINARY)
    (d / "latin1.yaml").write_bytes(LATIN1)
    (d / "bin.txt").write_bytes(BINARY)
    (d / "cfg").mkdir()
    (d / "cfg" / "c.json").write_text(json.dumps(CHAT))
    (d / "docs").mkdir()
    (d / "docs" / "a.txt").write_text("长城的历史。", encoding="utf-8")
    (d / "afile").write_text("not a folder")
    for name, rows in {
        "log_types.jsonl": [{"model": "m", "input_tokens": "many", "cost": [1]}],
        "log_null.jsonl": [{"model": "m", "input_tokens": None, "timestamp": None, "cost": None}],
        "log_string_ts.jsonl": [{"model": "m", "timestamp": "2025-01-01T00:00:00", "cost": 0.1}],
        "log_model_int.jsonl": [{"model": 5, "cost": 0.1}, {"model": "ok", "latency_s": "fast"}],
    }.items():
        (d / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (d / "empty_set").mkdir()
    for f in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        (d / "empty_set" / f).write_text("")


CASES: dict[str, tuple[list[str], bytes | None, Callable[[Path], list[str]] | None]] = {
    "config_binary": (["--config", "bin.json", "models"], None, None),
    "config_latin1": (["--config", "latin1.yaml", "models"], None, None),
    "config_is_fifo": (["--config", "fifo.json", "models"], None, lambda d: os.mkfifo(d / "fifo.json") or []),
    "embed_file_binary": (["embed", "minilm", "--file", "bin.txt"], None, None),
    "embed_stdin_binary": (["embed", "minilm", "--file", "-"], BINARY, None),
    "rerank_file_binary": (["rerank", "x", "q", "--file", "bin.txt"], None, None),
    "rerank_stdin_binary": (["rerank", "x", "q", "--file", "-"], BINARY, None),
    "cost_binary_log": (["cost", "bin.txt"], None, None),
    "cost_wrong_types": (["cost", "log_types.jsonl"], None, None),
    "cost_nulls": (["cost", "log_null.jsonl"], None, None),
    "cost_string_timestamp": (["cost", "log_string_ts.jsonl", "--since", "2024-01-01"], None, None),
    "cost_model_not_string": (["cost", "log_model_int.jsonl"], None, None),
    "repl_stdin_binary": (["--config", "cfg", "chat", "c"], b"caf\xe9 au lait\n" + BINARY, None),
    "index_kb_is_file": (["rag", "index", "docs", "--kb", "afile"], None, None),
    "index_kb_under_file": (["rag", "index", "docs", "--kb", "afile/kb"], None, None),
    "index_kb_unwritable": (["rag", "index", "docs", "--kb", "/proc/module_ai_kb"], None, None),
    "demo_kb_is_file": (["demo", "--kb", "afile", "--quiet"], None, None),
    "eval_empty_set": (["rag", "eval", "empty_set", "--json"], None, None),
}
for _cmd in ("stats", "index", "ask"):
    for _kind, _change in {"no_metric": lambda m: m.pop("metric"),
                           "no_embedding_model": lambda m: m.pop("embedding_model"),
                           "a_list": lambda m: [m]}.items():
        _args = {"stats": ["rag", "stats"], "index": ["rag", "index", "docs"], "ask": ["rag", "ask", "问题"]}[_cmd]
        CASES[f"{_cmd}_manifest_{_kind}"] = ([*_args, "--kb", "kb"], None,
                                              lambda d, c=_change: _kb_with_manifest(d, c) and [])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_1(case, tmp_path):
    args, stdin, prepare = CASES[case]
    _setup(tmp_path)
    if prepare:
        prepare(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HOME": str(tmp_path)}
    env.pop("MODULE_AI_CONFIG", None)
    command = [sys.executable, "-W", "error::RuntimeWarning", "-m", "module_ai", *args]
    proc = subprocess.run(command, check=False, cwd=tmp_path, env=env, input=stdin if stdin is not None else b"",
                          capture_output=True, timeout=180)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1, f"{case}: exit {proc.returncode}\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("module-ai: error: "), f"{case}:\n{err[-3000:]}"
    if case == "eval_empty_set":
        assert "set is empty" in lines[0]
    if "binary" in case or "latin1" in case:  # refused for what it is, not by a later failure
        assert "UTF-8" in lines[0] or "usage log" in lines[0], lines[0]


def test_terminal_escapes_in_names_are_printed_inert(tmp_path):
    evil = "evil\x1b]0;owned\x07\x1b[2J\u202e"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "m.json").write_text(json.dumps({"models": {evil: {**CHAT, "model": evil},
                                                                    "other": {**CHAT, "fallbacks": ["nope\x1b[31m"]}}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    outputs = []
    for args in (["models"], ["models", "--json"], ["chat", "nope\x1b[31m", "-m", "hi"]):
        proc = subprocess.run([sys.executable, "-m", "module_ai", "--config", "cfg", *args], check=False, cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, (args, out)
        assert "Traceback" not in out
        outputs.append(out)
    assert "evil\\u001b]0;owned" in outputs[0]  # shown, escaped
    assert json.loads(outputs[1])[0]["name"] == evil  # --json stays valid JSON with the real name
