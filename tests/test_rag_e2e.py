"""End to end: index → retrieve → answer with real MiniLM embeddings and the llama.cpp test server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from module_ai import load_registry
from module_ai.chains.rag import rag_chain
from module_ai.cli import main

DEMO = Path(__file__).resolve().parent.parent / "module_ai" / "data" / "demo"


@pytest.fixture()
def workspace(tmp_path, llama_server):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.json").write_text(json.dumps({
        "model_type": "chat", "server_type": "openai", "model": "tiny", "url": llama_server,
        "input_tokens": 2048, "out_tokens": 16, "thinking_style": "none"}))
    docs = tmp_path / "docs"
    shutil.copytree(DEMO, docs)
    return tmp_path


def test_python_api_index_retrieve_answer(workspace):
    from module_ai.retrieval import KnowledgeBase

    reg = load_registry(workspace / "configs")
    kb = KnowledgeBase.build(workspace / "docs", workspace / "kb", reg.embeddings("minilm"),
                             embedding_model_name="minilm", chunk_size=120, chunk_overlap=20,
                             show_progress=False)
    retriever = kb.as_retriever(k=2)  # the tiny model has 2,048 byte-level tokens of context
    top = retriever.invoke("qwen3-4b 的输出价格")
    assert any("1.2 元" in d.page_content for d in top)
    out = rag_chain(reg.chat("tiny"), retriever).invoke("qwen3-4b 的输出价格是多少？")
    assert isinstance(out["answer"], str) and out["answer"]
    assert len(out["contexts"]) == 2 and out["refused"] is False
    assert out["contexts"][0]["id"] == top[0].id and out["contexts"][0]["source"].endswith(".md")
    # gibberish from the random model cites nothing it can support
    assert out["grounded"] is False
    pieces = list(rag_chain(reg.chat("tiny"), retriever).stream("长城"))
    assert "sources" in pieces[-1]


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
