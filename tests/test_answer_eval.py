"""`module-ai rag eval --answers` and `evaluate_answers` against real local servers.

The fake DashScope always answers "你好，我是测试模型。…" (no citation, no refusal), so on any sample
its scores are known exactly: nothing correct, every unanswerable question answered, every answer
failing the groundedness check. The tiny llama.cpp server (an OpenAI-compatible server) checks the
protocol end to end on a small hand-written set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_ai import evaluate_answers, load_registry
from module_ai.cli import main
from module_ai.retrieval._testing import HashingEmbeddings

ROOT = Path(__file__).resolve().parents[1]
CMRC = ROOT / "data" / "retrieval" / "cmrc2018-dev-zh"
MINI = ROOT / "tests" / "data" / "answers_mini"
KEYS = {"n", "correct", "f1", "citation_precision", "citation_recall", "false_refusal", "hallucination"}


@pytest.fixture()
def dashscope_configs(tmp_path, dashscope_server, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the CLI keeps its index cache under ~/.cache
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "qwen": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "no_think": True,
                 "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}",
                 "pay_in": 0.3, "pay_out": 1.2, "out_tokens": 8},
        "emb": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
                "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}", "max_batch": 10,
                "dimensions": 64},
    }}))
    return str(tmp_path / "m.json")


def _chat_calls(server) -> int:
    return len(server.requests_to("/chat/completions"))


def test_cli_answers_on_cmrc_against_fake_dashscope(dashscope_configs, dashscope_server, capsys):
    argv = ["--config", dashscope_configs, "rag", "eval", str(CMRC), "--answers", "--sample", "3",
            "--chat", "qwen", "--embedding", "emb", "--min-coverage", "0"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a = out["answers"]
    assert KEYS <= set(a) and a["n"] == 6 and (a["answerable"], a["unanswerable"]) == (3, 3)
    assert _chat_calls(dashscope_server) == 6
    assert (a["correct"], a["false_refusal"], a["hallucination"], a["grounded"]) == (0.0, 0.0, 1.0, 0.0)
    assert a["citation_precision"] is None  # no [n] marker in any answer
    assert a["citation_recall"] == (0.0 if a["retrieval_hit"] else None)
    assert (a["flag_precision"], a["flag_recall"]) == (1.0, 1.0)  # every answer is wrong and flagged
    assert a["tokens"] > 0 and a["cost"] > 0 and a["latency_s"] > 0
    assert all(0 <= a[k] <= 1 for k in KEYS - {"n"} if a[k] is not None)
    assert len(out["worst"]) == 5 and all(w["why"] and w["answer"] for w in out["worst"])
    assert {"answerable", "unanswerable"} == {w["kind"] for w in out["worst"]}
    una = [r for r in out["records"] if r["kind"] == "unanswerable"]
    assert all(r["relevant_blocks"] == [] for r in una)  # their passages are not in the index
    # min_score above any cosine: every question refused before the model is called
    assert main([*argv, "--json", "--min-score", "1.5"]) == 0
    refused = json.loads(capsys.readouterr().out)["answers"]
    assert (refused["false_refusal"], refused["hallucination"], refused["correct"]) == (1.0, 0.0, 0.0)
    assert _chat_calls(dashscope_server) == 6
    # min_coverage above 1: no passage holds more than all of the question, so the chain refuses unasked
    assert main([*argv, "--json", "--min-coverage", "1.01"]) == 0
    assert json.loads(capsys.readouterr().out)["answers"]["false_refusal"] == 1.0
    assert _chat_calls(dashscope_server) == 6
    assert main(argv) == 0
    table = capsys.readouterr().out
    for word in ("correct", "citation_precision", "false_refusal", "hallucination", "worst examples:",
                 "min_score", "policy supported_only:lexical"):
        assert word in table


def test_cli_answer_eval_errors(dashscope_configs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MODULE_AI_CHAT", raising=False)
    no_answers = ROOT / "data" / "retrieval" / "covidqa-chunks-a-en"
    assert main(["--config", dashscope_configs, "rag", "eval", str(no_answers), "--answers", "--chat", "qwen"]) == 1
    assert "answers.jsonl" in capsys.readouterr().err
    assert main(["--config", dashscope_configs, "rag", "eval", str(CMRC), "--answers", "--embedding", "emb",
                 "--chat", "none"]) == 1
    assert "--chat" in capsys.readouterr().err
    assert main(["--config", dashscope_configs, "rag", "eval", str(MINI), "--answers", "--sample", "4",
                 "--chat", "qwen", "--embedding", "emb"]) == 1
    assert "cannot sample 4" in capsys.readouterr().err


def test_python_api_against_llama_server(llama_server, tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps({
        "model_type": "chat", "server_type": "openai", "model": "tiny", "url": llama_server,
        "input_tokens": 2048, "out_tokens": 12, "thinking_style": "none"}))
    reg = load_registry(tmp_path / "tiny.json")
    report = evaluate_answers(MINI, reg.chat("tiny"), HashingEmbeddings(size=64), sample=2, k=2, seed=1,
                              check_embeddings=HashingEmbeddings(size=64))
    a = report["answers"]
    assert (a["n"], a["answerable"], a["unanswerable"]) == (4, 2, 2)
    assert all(0 <= a[k] <= 1 for k in KEYS - {"n"} if a[k] is not None)
    assert a["tokens"] > 0 and a["latency_s"] > 0
    assert set(report["checks"]) == {"lexical", "embedding"}
    assert {"supported_only:lexical", "refuse_ungrounded:embedding"} <= set(report["policies"])
    records = report["records"]
    assert all(r["n_blocks"] == 2 for r in records)
    for r in records:  # an unanswerable question's passage is absent, an answerable one's present
        present = any(c == f"d{r['id'][1:]}" for c in r["contexts"])
        assert r["relevant_blocks"] == ([r["contexts"].index(f"d{r['id'][1:]}") + 1] if present else [])
        assert not (r["kind"] == "unanswerable" and present)
    json.dumps(report, ensure_ascii=False)


@pytest.mark.slow
def test_cli_answers_with_the_local_model(tmp_path, monkeypatch, capsys):
    """The built-in local models (qwen2.5-coder-0.5b in-process, multilingual-e5-small; from h16's configs)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["rag", "eval", str(MINI), "--answers", "--sample", "3", "--k", "2", "--chat", "qwen2.5-coder-0.5b",
                 "--embedding", "multilingual-e5-small", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)["answers"]
    assert (a["n"], a["answerable"], a["unanswerable"]) == (6, 3, 3) and a["errors"] == 0
    assert all(0 <= a[k] <= 1 for k in KEYS - {"n"} if a[k] is not None)
    assert a["retrieval_hit"] == 1.0 and a["tokens"] > 0  # six passages: the answerable ones are always found
