"""Features README.md names, each with a test that fails if the feature breaks.

thinking_budget and reasoning_content on the wire (fake DashScope), embedding-based groundedness,
$MODULE_AI_PROMPTS overrides (txt and yaml), `cost --model/--since`, `models --type`,
`rag eval --save-best`, and the SQLite chat history surviving a deleted database file.
"""

from __future__ import annotations

import json
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from module_ai import ModelConfig, Registry, check_groundedness, load_prompt
from module_ai.chains.chat import SQLiteHistoryStore
from module_ai.chains.rag import refusal_text
from module_ai.cli import main
from module_ai.prompts import load_prompt_set


def _ds(server, name: str, **fields) -> Registry:
    cfg = ModelConfig(name=name, model_type="chat", server_type="openai", url=server.base_url,
                      api_key="${MODULE_AI_TEST_KEY}", **fields)
    return Registry({name: cfg})


def _chat_bodies(server) -> list[dict]:
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")]


def test_thinking_budget_reaches_the_wire_and_caps_reasoning(dashscope_server):
    llm = _ds(dashscope_server, "think", model="qwen3-4b", thinking_budget=3, out_tokens=4).chat("think")
    chunks = list(llm.stream("你好"))
    body = _chat_bodies(dashscope_server)[-1]
    assert body["thinking_budget"] == 3 and body.get("enable_thinking") is not False
    reasoning = "".join(c.additional_kwargs.get("reasoning_content") or "" for c in chunks)
    assert reasoning == "嗯，用户"  # the server's first 3 reasoning pieces: the budget was applied


def test_reasoning_content_through_a_real_invoke(dashscope_server):
    reply = _ds(dashscope_server, "r1", model="deepseek-reasoner", out_tokens=4).chat("r1").invoke("你好")
    assert reply.additional_kwargs["reasoning_content"].startswith("嗯，用户在打招呼")
    assert reply.content and reply.usage_metadata["output_tokens"] > 0


def test_embedding_groundedness_supports_a_paraphrase_that_lexical_rejects():
    answer = "员工每年可休十天带薪假。[1]"
    block = "年假：正式员工享有 10 个工作日的带薪年休假。"

    def embed(texts: list[str]) -> list[list[float]]:  # a paraphrase-aware model in miniature
        return [[1.0, 0.1] if ("假" in t) else [0.0, 1.0] for t in texts]

    lexical = check_groundedness(answer, [block])
    assert not lexical["grounded"] and lexical["unsupported"] == [answer]
    with_embeddings = check_groundedness(answer, [block], embed=embed)
    assert with_embeddings["grounded"] and with_embeddings["sentences"][0]["support"] > 0.6
    unrelated = check_groundedness(answer, [block], embed=lambda texts: [[1.0, 0.0], [0.0, 1.0]])
    assert not unrelated["grounded"]


def test_prompt_overrides_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "rag_refusal.zh.txt").write_text("资料里没有答案", encoding="utf-8")
    (tmp_path / "graph_rag.yaml").write_text("zh:\n  refusal: 自定义拒答\n  grade_user: '{question}?'\n",
                                             encoding="utf-8")
    assert refusal_text("zh") != "资料里没有答案"
    monkeypatch.setenv("MODULE_AI_PROMPTS", str(tmp_path))
    assert refusal_text("zh") == "资料里没有答案"
    assert load_prompt("rag_refusal", "en") == load_prompt("rag_refusal", "en", override_dir=None)  # en not overridden
    assert load_prompt_set("graph_rag", "zh") == {"refusal": "自定义拒答", "grade_user": "{question}?"}


def _record(model: str, ts: float, cost: float, tokens: int) -> dict:
    return {"kind": "chat", "model": model, "timestamp": ts, "input_tokens": tokens, "output_tokens": 1,
            "cost": cost, "currency": "CNY", "latency_s": 0.1}


def test_cost_filters_by_model_and_since(tmp_path, capsys):
    day = 86400.0
    now = time.time()
    log = tmp_path / "usage.jsonl"
    rows = [_record("a", now - 3 * day, 1.0, 10), _record("a", now, 2.0, 20), _record("b", now, 4.0, 40)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    since = time.strftime("%Y-%m-%d", time.localtime(now - day))
    assert main(["cost", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["total_cost"] == pytest.approx(7.0)
    assert main(["cost", str(log), "--model", "a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["total_cost"] == pytest.approx(3.0)
    assert main(["cost", str(log), "--model", "a", "--since", since, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["total_cost"] == pytest.approx(2.0) and report["total"]["input_tokens"] == 20


def test_models_type_filter(tmp_path, capsys):
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "c": {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b"},
        "e": {"model_type": "embedding", "server_type": "ollama", "model": "bge-m3"},
    }}), encoding="utf-8")
    assert main(["-c", str(tmp_path), "models", "--type", "embedding", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in listed]
    assert "e" in names and "c" not in names and all(m["model_type"] == "embedding" for m in listed)


def test_sqlite_history_at_a_deleted_files_path(tmp_path):
    path = tmp_path / "chat.sqlite"
    store = SQLiteHistoryStore(path)
    store("s").add_messages([HumanMessage("一"), AIMessage("二")])
    path.unlink()
    again = SQLiteHistoryStore(path)  # same path, new file: the table must be created again
    again("s").add_messages([HumanMessage("三")])
    assert [m.content for m in again("s").messages] == ["三"]


def _beir_slice(src, dst, n_queries: int = 30) -> None:
    qrels = [line.split("\t") for line in (src / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    keep = {q for q, _, _ in qrels[:n_queries]}
    rows = [r for r in qrels if r[0] in keep]
    passages = {p for _, p, _ in rows}
    dst.mkdir()
    (dst / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows),
                                   encoding="utf-8")
    for name, ids in (("queries.jsonl", keep), ("corpus.jsonl", passages)):
        lines = [ln for ln in (src / name).read_text(encoding="utf-8").splitlines() if json.loads(ln)["_id"] in ids]
        (dst / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_rag_eval_save_best_stores_the_winning_setting(tmp_path, dashscope_server, capsys):
    from pathlib import Path

    from module_ai.retrieval import KnowledgeBase

    cmrc = Path(__file__).resolve().parents[1] / "data" / "retrieval" / "cmrc2018-dev-zh"
    _beir_slice(cmrc, tmp_path / "set")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "emb.json").write_text(json.dumps({
        "model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
        "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}", "max_batch": 10}), encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 标题\n\n北京是中国的首都。\n", encoding="utf-8")
    cfg, kb_dir = str(tmp_path / "cfg"), str(tmp_path / "kb")
    assert main(["-c", cfg, "rag", "index", str(docs), "--embedding", "emb", "--kb", kb_dir, "--quiet"]) == 0
    kb = KnowledgeBase.open(kb_dir, None)
    kb.set_defaults(weights=(0.33, 0.67), norm="minmax")  # a setting the tuner's grid never produces
    capsys.readouterr()
    assert main(["-c", cfg, "rag", "eval", str(tmp_path / "set"), "--embedding", "emb", "--folds", "2",
                 "--save-best", kb_dir, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["best"]["params"]
    stored = KnowledgeBase.open(kb_dir, None).settings.to_dict()
    assert {k: stored[k] for k in best if k in stored} == {k: v for k, v in best.items() if k in stored}
    assert stored["weights"] != [0.33, 0.67]
