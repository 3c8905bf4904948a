"""Evaluation and tuning: report shape, metric arithmetic, CV selection, a subsample of a shared set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import BaseDocumentCompressor

from module_ai.retrieval import metrics as M
from module_ai.retrieval._testing import HashingEmbeddings
from module_ai.retrieval.embedded.index import Candidates
from module_ai.retrieval.evaluate import evaluate_retrieval, load_beir

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"
CMRC = DATA / "cmrc2018-dev-zh"
METHODS = {"bm25", "dense", "hybrid", "hybrid_tuned"}


def _cand(rows, bm25, dense, b_rank, d_rank):
    return Candidates(*(np.asarray(x) for x in (rows, bm25, dense, b_rank, d_rank)))


def test_metrics_hand_computed():
    # one query, candidates rows 0..3, relevant rows 2 (gain 1) and 9 (not retrieved)
    batch = M.pad([_cand([0, 1, 2, 3], [4.0, 3.0, 2.0, 0.0], [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 0], [4, 3, 2, 1])],
                  [{2: 1.0, 9: 1.0}])
    m = M.metrics(batch, M.single(batch, "bm25"))  # ranking 0, 1, 2 -> relevant at rank 3
    idcg = 1 + 1 / np.log2(3)
    assert m["ndcg@10"][0] == pytest.approx((1 / np.log2(4)) / idcg)
    assert m["recall@10"][0] == pytest.approx(0.5)
    assert m["mrr@10"][0] == pytest.approx(1 / 3)
    d = M.metrics(batch, M.single(batch, "dense"))  # ranking 3, 2, ... -> rank 2
    assert d["mrr@10"][0] == pytest.approx(0.5)


def test_grid_and_cv_selection_rule():
    grid = M.grid()
    assert len(grid) == 33 and grid[0]["weights"] == [0.0, 1.0] and grid[-1]["fusion"] == "rrf"
    n = 400
    rng = np.random.default_rng(0)
    base = rng.random(n)
    # setting 10 (bm25 only) vs setting 5 (a hybrid) with a tiny, noisy gain: the single one must win
    per = [{"ndcg@10": base.copy(), "recall@10": base.copy(), "mrr@10": base.copy()} for _ in grid]
    noisy = base + rng.normal(0.0005, 0.05, n)
    per[5] = {k: noisy for k in per[5]}
    _, chosen = M.cross_validate(per, grid, 5, 0)
    assert min(grid[chosen]["weights"]) == 0
    strong = base + 0.05  # a clear gain: the hybrid wins
    per[5] = {k: strong for k in per[5]}
    scores, chosen = M.cross_validate(per, grid, 5, 0)
    assert chosen == 5 and scores["ndcg@10"] == pytest.approx(strong.mean())


class _Reverse(BaseDocumentCompressor):
    def compress_documents(self, documents, query, callbacks=None):
        return list(reversed(list(documents)))


def test_eval_on_cmrc_subsample():
    corpus, queries, _ = load_beir(CMRC)
    assert len(corpus) == 848 and len(queries) == 3218
    report = evaluate_retrieval(CMRC, HashingEmbeddings(size=128), max_queries=300, reranker=_Reverse(), rerank_top=5)
    assert set(report) == {"dataset", "results", "best"} and report["dataset"] == "cmrc2018-dev-zh"
    assert set(report["results"]) == METHODS | {"hybrid_rerank"}
    for scores in report["results"].values():
        assert set(scores) == {"ndcg@10", "recall@10", "mrr@10"} and all(0 <= v <= 1 for v in scores.values())
    res = report["results"]
    assert res["bm25"]["ndcg@10"] > 0.95  # Chinese tokenization works
    assert res["hybrid_tuned"]["ndcg@10"] >= max(res["bm25"]["ndcg@10"], res["dense"]["ndcg@10"]) - 0.005
    assert res["hybrid_rerank"]["mrr@10"] < res["hybrid"]["mrr@10"]  # the reversing reranker hurts
    assert report["best"]["method"] in res and "mode" in report["best"]["params"]
