"""Hybrid retrieval speed: module_ai KnowledgeBase vs LangChain's stock hybrid vs the raw floor.

Synthetic data as in ``perf-anchors.md`` §1 (deterministic): pseudo-English words with a
Zipf-Mandelbrot law, chunks of 45-75 words, 384-dim random unit vectors served by a fake Embeddings
that looks vectors up by text (and returns Python lists, like real LangChain embeddings), queries of
3-8 words taken from a source chunk with query vector = source vector + unit noise.

Systems:
  stock  langchain_classic EnsembleRetriever(0.5/0.5) over langchain_community BM25Retriever (k=10)
         and InMemoryVectorStore (k=10)
  floor  bm25s top-100 + one numpy matmul/argpartition top-100 + RRF (k=60) in numpy, top 10
  ours   module_ai KnowledgeBase.build(...).as_retriever(k=10) with default settings (weighted
         z-score fusion of top-100 + top-100), persisted to a temp folder with its embedding cache

Latency: one process, systems alternating query by query (order rotated); the stock hybrid gets
fewer queries at large sizes (``--stock-queries``). Build time and peak RSS: a fresh process per
build, ``--builds`` builds per system, order rotated; "delta" = peak RSS minus RSS once the data
(texts + float32 vectors) is in memory. BLAS/OpenMP pinned to one thread for all systems.

Run: ``python benchmarks/bench_retrieval.py --sizes 10000,100000`` (builds only, without the slow stock
hybrid: ``--systems floor,ours --skip-latency``)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SYSTEMS = ("stock", "floor", "ours")


# ----------------------------------------------------------------------------- data
def make_data(n: int, n_queries: int, seed: int = 0, dims: int = 384, vocab: int = 5000):
    """Deterministic synthetic corpus, vectors, queries and query vectors."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = sorted({"".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(vocab * 2)})[:vocab]
    ranks = np.arange(1, len(words) + 1)
    p = 1.0 / (ranks + 2.7) ** 1.0  # Zipf-Mandelbrot, q = 2.7
    p /= p.sum()
    lengths = rng.integers(45, 76, size=n)
    ids = rng.choice(len(words), size=int(lengths.sum()), p=p)
    words_arr = np.array(words)
    texts, pos = [], 0
    for length in lengths:
        texts.append(" ".join(words_arr[ids[pos : pos + length]]))
        pos += length
    vecs = rng.standard_normal((n, dims)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    src = rng.choice(n, size=n_queries, replace=False)
    queries = []
    for s in src:
        toks = texts[s].split()
        k = int(rng.integers(3, 9))
        start = int(rng.integers(0, len(toks) - k))
        queries.append(" ".join(toks[start : start + k]))
    noise = rng.standard_normal((n_queries, dims)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    qvecs = vecs[src] + noise
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    return texts, vecs, queries, qvecs.astype(np.float32), src


def lookup_embeddings(texts, vecs, queries, qvecs):
    """A LangChain Embeddings that returns precomputed vectors (as lists) by text."""
    from langchain_core.embeddings import Embeddings

    doc_row = {t: i for i, t in enumerate(texts)}
    q_row = {t: i for i, t in enumerate(queries)}

    class LookupEmbeddings(Embeddings):
        model = "synthetic-384"

        def embed_documents(self, batch):
            return vecs[[doc_row[t] for t in batch]].tolist()

        def embed_query(self, text):
            return qvecs[q_row[text]].tolist()

    return LookupEmbeddings()


# ----------------------------------------------------------------------------- systems
def build_stock(texts, emb):
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.vectorstores import InMemoryVectorStore

    ids = [str(i) for i in range(len(texts))]
    bm25 = BM25Retriever.from_texts(texts, metadatas=[{"row": i} for i in range(len(texts))], ids=ids, k=10)
    store = InMemoryVectorStore(emb)
    store.add_texts(texts, metadatas=[{"row": i} for i in range(len(texts))], ids=ids)
    ens = EnsembleRetriever(retrievers=[bm25, store.as_retriever(search_kwargs={"k": 10})], weights=[0.5, 0.5])
    return lambda q, qv: [d.metadata["row"] for d in ens.invoke(q)]


def build_floor(texts, vecs):
    import bm25s

    from module_ai.retrieval.embedded.index import one_thread

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    mat = np.ascontiguousarray(vecs)

    def query(q, qv):
        with one_thread():
            res, scores = retriever.retrieve(bm25s.tokenize([q], stopwords="en", show_progress=False),
                                             k=100, show_progress=False, n_threads=0)
            dots = mat @ qv
        top = np.argpartition(-dots, 99)[:100]
        top = top[np.argsort(-dots[top])]
        fused: dict[int, float] = {}
        for rank, r in enumerate(res[0][scores[0] > 0], start=1):
            fused[int(r)] = fused.get(int(r), 0.0) + 0.5 / (60 + rank)
        for rank, r in enumerate(top, start=1):
            fused[int(r)] = fused.get(int(r), 0.0) + 0.5 / (60 + rank)
        return sorted(fused, key=fused.__getitem__, reverse=True)[:10]

    return query


def build_ours(texts, emb, kb_dir):
    from langchain_core.documents import Document

    from module_ai.retrieval import KnowledgeBase

    docs = [Document(page_content=t, metadata={"source": f"doc-{i}", "row": i}) for i, t in enumerate(texts)]
    kb = KnowledgeBase.build(docs, kb_dir, emb, chunk_size=4000, chunk_overlap=0, batch_size=1024,
                             show_progress=False)
    retriever = kb.as_retriever(k=10)
    return lambda q, qv: [d.metadata["row"] for d in retriever.invoke(q)]


def build(system, texts, vecs, emb, tmp):
    if system == "stock":
        return build_stock(texts, emb)
    if system == "floor":
        return build_floor(texts, vecs)
    return build_ours(texts, emb, tmp)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so data generation does not count; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_imports(system: str) -> None:
    """Import each system's modules before timing (import cost is measured by bench_import_time)."""
    if system == "stock":
        import langchain_classic.retrievers  # noqa: F401
        import langchain_community.retrievers  # noqa: F401
        import rank_bm25  # noqa: F401
        from langchain_core.vectorstores import InMemoryVectorStore  # noqa: F401
    else:
        import bm25s  # noqa: F401
        import langchain_core.retrievers  # noqa: F401
        import threadpoolctl  # noqa: F401

        import module_ai.retrieval.embedded.kb
        import module_ai.retrieval.retriever  # noqa: F401


# ----------------------------------------------------------------------------- child: one build
def child_build(system: str, n: int) -> None:
    texts, vecs, queries, qvecs, _ = make_data(n, 10)
    emb = lookup_embeddings(texts, vecs, queries, qvecs)
    warm_imports(system)
    gc.collect()
    base = rss_mib()
    reset_peak()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fn = build(system, texts, vecs, emb, tmp)
        secs = time.perf_counter() - t0
        peak = peak_mib()
        del fn
    print(json.dumps({"system": system, "n": n, "build_s": secs, "peak_mib": peak, "delta_mib": peak - base}))


def builds(n: int, repeats: int, systems: tuple[str, ...] = SYSTEMS) -> dict[str, dict[str, float]]:
    rows: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(repeats):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        for system in order:
            out = subprocess.run([sys.executable, __file__, "--child-build", system, "--sizes", str(n)],
                                 capture_output=True, text=True, check=True, env={**os.environ, **THREAD_ENV})
            rows[system].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {s: {k: statistics.median(x[k] for x in v) for k in ("build_s", "peak_mib", "delta_mib")}
            for s, v in rows.items()}


# ----------------------------------------------------------------------------- latency
def latency(n: int, n_queries: int, stock_queries: int,
            systems: tuple[str, ...] = SYSTEMS) -> dict[str, dict[str, float]]:
    texts, vecs, queries, qvecs, src = make_data(n, n_queries)
    emb = lookup_embeddings(texts, vecs, queries, qvecs)
    with tempfile.TemporaryDirectory() as tmp:
        fns = {s: build(s, texts, vecs, emb, tmp) for s in systems}
        times: dict[str, list[float]] = {s: [] for s in systems}
        hits: dict[str, int] = {s: 0 for s in systems}
        for i, (q, qv) in enumerate(zip(queries, qvecs)):
            order = systems[i % len(systems) :] + systems[: i % len(systems)]
            for system in order:
                if system == "stock" and i >= stock_queries:
                    continue
                t0 = time.perf_counter()
                rows = fns[system](q, qv)
                times[system].append(time.perf_counter() - t0)
                hits[system] += int(src[i]) in rows[:10]
    return {s: {"median_ms": 1e3 * statistics.median(t), "p95_ms": 1e3 * float(np.percentile(t, 95)),
                "queries": len(t), "hit@10": hits[s] / len(t)} for s, t in times.items() if t}


def _ratio(table: dict[str, dict[str, float]], a: str, b: str, key: str) -> str:
    if a not in table or b not in table:
        return "n/a"
    return f"x{table[a][key] / table[b][key]:.2f}"


def report(n: int, lat: dict[str, dict[str, float]], bld: dict[str, dict[str, float]],
           systems: tuple[str, ...]) -> None:
    """Print one size's table and the ratios of medians (``n/a`` for a system not measured)."""
    nan = float("nan")
    print(f"\n== {n:,} chunks (load {os.getloadavg()[0]:.2f})")
    print(f"{'system':8}{'median ms':>11}{'p95 ms':>9}{'queries':>9}{'hit@10':>8}"
          f"{'build s':>9}{'peak MiB':>10}{'delta MiB':>11}")
    for s in systems:
        q, b = lat.get(s, {}), bld.get(s, {})
        print(f"{s:8}{q.get('median_ms', nan):11.2f}{q.get('p95_ms', nan):9.2f}{q.get('queries', 0):9d}"
              f"{q.get('hit@10', nan):8.2f}{b.get('build_s', nan):9.2f}"
              f"{b.get('peak_mib', nan):10.0f}{b.get('delta_mib', nan):11.0f}")
    print(f"ratios (medians): stock/ours latency {_ratio(lat, 'stock', 'ours', 'median_ms')}, "
          f"ours/floor latency {_ratio(lat, 'ours', 'floor', 'median_ms')}", end="")
    if bld:
        print(f", build ours/floor {_ratio(bld, 'ours', 'floor', 'build_s')}, "
              f"peak RSS ours/floor {_ratio(bld, 'ours', 'floor', 'peak_mib')} "
              f"(delta {_ratio(bld, 'ours', 'floor', 'delta_mib')}), "
              f"build stock/ours {_ratio(bld, 'stock', 'ours', 'build_s')}, "
              f"peak RSS stock/ours {_ratio(bld, 'stock', 'ours', 'peak_mib')}")
    else:
        print()


THREAD_ENV: dict[str, str] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    ap.add_argument("--queries", type=int, default=200, help="queries for floor and ours")
    ap.add_argument("--stock-queries", default="10000:200,100000:20",
                    help="queries for the stock hybrid per size, 'size:count,...' (default count: --queries)")
    ap.add_argument("--builds", type=int, default=3, help="fresh-process builds per system (0: skip)")
    ap.add_argument("--threads", choices=("one", "default"), default="one", help="BLAS/OpenMP threads")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma-separated systems to build and time (default: all three)")
    ap.add_argument("--skip-latency", action="store_true", help="measure builds only, no queries")
    ap.add_argument("--child-build", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads == "one":
        THREAD_ENV.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        os.environ.update(THREAD_ENV)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child_build:
        child_build(args.child_build, sizes[0])
        return
    stock_q = {int(k): int(v) for k, v in (p.split(":") for p in args.stock_queries.split(",") if p)}
    systems = tuple(s for s in SYSTEMS if s in args.systems.split(","))
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, threads={args.threads}")
    for n in sizes:
        lat = {} if args.skip_latency else latency(n, args.queries, stock_q.get(n, args.queries), systems)
        bld = builds(n, args.builds, systems) if args.builds else {}
        report(n, lat, bld, systems)

if __name__ == "__main__":
    main()
