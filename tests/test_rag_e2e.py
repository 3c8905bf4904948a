"""End to end: index → retrieve → answer with real MiniLM embeddings and the llama.cpp test server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from module_ai import load_registry
from module_ai.cli import main
from tests._helpers import check_answer_chain, demo_workspace


@pytest.fixture()
def workspace(tmp_path, llama_server):
    return demo_workspace(tmp_path, llama_server)


def test_python_api_index_retrieve_answer(workspace):
    from module_ai.retrieval import KnowledgeBase

    reg = load_registry(workspace / "configs")
    kb = KnowledgeBase.build(workspace / "docs", workspace / "kb", reg.embeddings("minilm"),
                             embedding_model_name="minilm", chunk_size=120, chunk_overlap=20,
                             show_progress=False)
    check_answer_chain(reg.chat("tiny"), kb.as_retriever(k=2))  # the tiny model has 2,048 tokens of context


def test_cli_index_ask_and_errors(workspace, capsys):
    cfg, kb = str(workspace / "configs"), str(workspace / "kb")
    assert main(["--config", cfg, "rag", "index", str(workspace / "docs"), "--kb", kb, "--quiet",
                 "--chunk-size", "120", "--chunk-overlap", "20"]) == 0
    assert "chunks" in capsys.readouterr().out
    assert main(["--config", cfg, "rag", "ask", "中文为什么需要分词", "--kb", kb, "--chat", "none", "--json"]) == 0
    evidence = json.loads(capsys.readouterr().out)
    assert evidence["answer"] is None and evidence["evidence"][0]["source"].endswith("02_rag_design.md")
    assert main(["--config", cfg, "rag", "ask", "中文为什么需要分词", "--kb", kb, "--chat", "tiny", "--k", "2",
                 "--json"]) == 0
    answered = json.loads(capsys.readouterr().out)
    assert answered["answer"] and len(answered["contexts"]) == 2
    assert main(["--config", cfg, "rag", "ask", "x", "--kb", kb, "--chat", "tiny", "--min-score", "0.99",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "根据已知信息无法回答"
    # re-index of the unchanged folder is a no-op sync
    assert main(["--config", cfg, "rag", "index", str(workspace / "docs"), "--kb", kb, "--quiet"]) == 0
    assert main(["--config", cfg, "rag", "ask", "q", "--kb", str(workspace / "nokb")]) == 1
    assert "module-ai rag index" in capsys.readouterr().err


def test_demo_runs_through_the_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "module_ai", "demo", "--kb", str(tmp_path / "kb"), "--quiet",
                           "--chat", "none"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "No chat model configured" in proc.stdout and "MODULE_AI_CHAT" in proc.stdout
    assert "03_deployment_and_cost.md" in proc.stdout


def test_cli_stats_and_delete(workspace, capsys):
    cfg, kb = str(workspace / "configs"), str(workspace / "kb")
    assert main(["--config", cfg, "rag", "index", str(workspace / "docs"), "--kb", kb, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["--config", cfg, "rag", "stats", "--kb", kb]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["sources"] == 4 and stats["embedding_model"] == "multilingual-e5-small" and stats["chunks"] > 4
    source = str(workspace / "docs" / "04_langchain_basics.md")
    assert main(["--config", cfg, "rag", "delete", source, "--kb", kb]) == 0
    capsys.readouterr()
    assert main(["--config", cfg, "rag", "stats", "--kb", kb]) == 0
    assert json.loads(capsys.readouterr().out)["sources"] == 3
    assert main(["--config", cfg, "rag", "delete", "nope.md", "--kb", kb]) == 1
    assert "not an indexed source" in capsys.readouterr().err
