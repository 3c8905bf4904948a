"""Rerank quality: BM25 top-50, then the local rerankers; nDCG@10 before and after.

    python benchmarks/bench_rerank.py [--data DIR] [--depth 50] [--limit N] [--reranker NAME ...] [--json]

Data: a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv), by default the English COVID-QA chunks
(/work/shared/data/retrieval/covidqa-chunks-a-en, or $MODULE_AI_BENCH_DATA). First stage: bm25s directly
(bm25s.tokenize: lower-cased words of 2+ characters, English stop words, no stemming) over "title. text"
of each passage (the reranker sees the same text). Second stage: each named
rerank model from the registry (default: the offline ``minilm-rerank``, embedding similarity with
all-MiniLM-L6-v2) reorders the BM25 top ``depth``. Also shown: reciprocal-rank fusion (k=60) of the BM25
order and the reranked order, the usual remedy when the reranker is weaker than the first stage.

The LLM reranker is not measured: the only chat model available offline is a tiny random-weight GGUF whose
judgements are gibberish (every item would take the fallback path and keep the BM25 order).
Metrics: nDCG@10 (binary gains, log2 discount), Recall@10, MRR@10, averaged over queries that have qrels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = os.environ.get("MODULE_AI_BENCH_DATA", "/work/shared/data/retrieval/covidqa-chunks-a-en")
RRF_K = 60
"""Reciprocal-rank fusion constant: score = sum of 1 / (RRF_K + rank), rank starting at 1."""


def load_beir(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = f"{row['title']}. {row['text']}" if row.get("title") else row["text"]
    queries = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    qrels: dict[str, set[str]] = {}
    for line in (folder / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc_id, score = line.split("\t")
        if float(score) > 0:
            qrels.setdefault(qid, set()).add(doc_id)
    return corpus, queries, qrels


def bm25_top(corpus: dict[str, str], queries: dict[str, str], depth: int) -> dict[str, list[str]]:
    import bm25s

    ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([corpus[i] for i in ids], stopwords="en", show_progress=False),
                    show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
    hits, _ = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    return {qid: [ids[j] for j in row] for qid, row in zip(qids, hits.tolist())}


def metrics(ranked: list[str], relevant: set[str], k: int = 10) -> tuple[float, float, float]:
    """(nDCG@k, Recall@k, MRR@k) with binary gains."""
    top = ranked[:k]
    dcg = sum(1 / math.log2(r + 2) for r, d in enumerate(top) if d in relevant)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    recall = len(relevant & set(top)) / len(relevant)
    mrr = next((1 / (r + 1) for r, d in enumerate(top) if d in relevant), 0.0)
    return dcg / ideal, recall, mrr


def mean_metrics(runs: dict[str, list[str]], qrels: dict[str, set[str]]) -> dict[str, float]:
    rows = [metrics(runs[q], qrels[q]) for q in runs]
    return {name: sum(r[i] for r in rows) / len(rows) for i, name in enumerate(("ndcg@10", "recall@10", "mrr@10"))}


def rrf(*orders: list[str]) -> list[str]:
    scores: dict[str, float] = {}
    for order in orders:
        for rank, doc_id in enumerate(order, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1 / (RRF_K + rank)
    return sorted(scores, key=lambda d: -scores[d])  # stable: ties keep the first order


def rerank_runs(name: str, first: dict[str, list[str]], corpus: dict[str, str], queries: dict[str, str]):
    from module_ai import load_registry

    reranker = load_registry(ROOT / "configs").reranker(name)
    reranker.rank("warm up", ["load the model once"])
    runs, start = {}, time.perf_counter()
    for qid, candidates in first.items():
        pairs = reranker.rank(queries[qid], [corpus[d] for d in candidates])
        runs[qid] = [candidates[i] for i, _ in pairs]
    return runs, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="BEIR folder")
    parser.add_argument("--depth", type=int, default=50, help="BM25 candidates per query")
    parser.add_argument("--limit", type=int, default=None, help="only the first N queries with qrels")
    parser.add_argument("--reranker", nargs="+", default=["minilm-rerank"], help="rerank model names")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)

    corpus, queries, qrels = load_beir(Path(args.data))
    queries = {q: t for q, t in queries.items() if q in qrels}
    if args.limit:
        queries = dict(list(queries.items())[: args.limit])
    start = time.perf_counter()
    first = bm25_top(corpus, queries, args.depth)
    bm25_s = time.perf_counter() - start
    results = [{"method": f"BM25 top-{args.depth}", **mean_metrics(first, qrels), "seconds": round(bm25_s, 1)}]
    for name in args.reranker:
        runs, seconds = rerank_runs(name, first, corpus, queries)
        results.append({"method": f"BM25 -> {name}", **mean_metrics(runs, qrels), "seconds": round(seconds, 1)})
        fused = {q: rrf(first[q], runs[q]) for q in first}
        results.append({"method": f"RRF(BM25, {name})", **mean_metrics(fused, qrels), "seconds": round(seconds, 1)})
    results.append({"method": "BM25 -> LLM reranker", "skipped": "only a tiny random-weight chat model offline "
                    "(gibberish judgements; every item falls back to the BM25 order)"})
    if args.json:
        print(json.dumps({"data": args.data, "queries": len(queries), "depth": args.depth, "results": results},
                         indent=2))
        return 0
    print(f"{Path(args.data).name}: {len(queries)} queries, {len(corpus)} passages, BM25 depth {args.depth}")
    print(f"{'method':<32} {'nDCG@10':>8} {'R@10':>6} {'MRR@10':>7} {'seconds':>8}")
    for row in results:
        if "skipped" in row:
            print(f"{row['method']:<32} skipped: {row['skipped']}")
            continue
        print(f"{row['method']:<32} {row['ndcg@10']:>8.3f} {row['recall@10']:>6.3f} {row['mrr@10']:>7.3f} "
              f"{row['seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
