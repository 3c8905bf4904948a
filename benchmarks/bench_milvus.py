"""Knowledge-base backends side by side: the embedded index vs Milvus Lite (module_ai.retrieval.milvus).

Data: the synthetic corpus of ``bench_retrieval.py`` / ``perf-anchors.md`` §1 (deterministic
pseudo-English Zipf text, chunks of 45-75 words, 384-dim random unit vectors served by a lookup
Embeddings, so no model time is measured; queries of 3-8 words from a source chunk, query vector =
source vector + unit noise). Every chunk is one Document (chunk_size 4000: no further splitting).

Systems (same Documents, same embeddings, both through their public KB API):
  embedded  module_ai.retrieval.KnowledgeBase (bm25s + exact NumPy dense, one folder)
  milvus    module_ai.retrieval.milvus.MilvusKnowledgeBase on Milvus Lite (in-process gRPC server, jieba BM25
            function, HNSW M=16 efConstruction=200, ef=max(64, limit), COSINE)

Index: a fresh process per build (``--builds`` per system, order rotated): seconds, chunks/s, peak RSS,
RSS delta (peak minus RSS once the data is in memory), bytes on disk. Queries: one process, both
systems opened from disk, alternating query by query (order rotated), through ``as_retriever(k=10)``
in four modes: bm25, dense, hybrid (default settings: weighted min-max 0.7/0.3; Milvus: two searches
fused client-side) and hybrid_rrf (equal-weight RRF; Milvus: one hybrid_search with RRFRanker).
hit@10 = the query's source chunk in the top 10. BLAS/OpenMP pinned to one thread (``--threads``).

Milvus Lite is a development engine (pure Python storage, segment-local BM25 statistics, one process
per file); on a cluster the same code path runs with other settings: see CLUSTER_NOTES below.

Run: ``python benchmarks/bench_milvus.py --sizes 10000,100000``

Measured here (2 shared vCPUs, load 4-5 from other jobs; milvus-lite 3.2.2, pymilvus 3.0.2; one build
per system; 200 queries; p50 / p95 ms, hit@10):

=======  ========  =========  ========  ===============  ===============  ===============  ===============
chunks   system    chunks/s   peak MiB  bm25             dense            hybrid           hybrid_rrf
=======  ========  =========  ========  ===============  ===============  ===============  ===============
10k      embedded  11,462     168       0.26/0.56 .98    0.66/0.92 1.00   1.53/5.63 1.00   1.49/5.91 1.00
10k      milvus    751        595       20.7/55.7 .98    4.76/12.1 .995   47.2/92.9 1.00   52.0/114 1.00
100k     embedded  5,101      990       0.78/1.24 .87    6.04/14.2 1.00   10.0/24.9 1.00   7.43/18.8 1.00
100k     milvus    551        2,181     350/687 .87      89.2/141 .84     529/932 .98      475/940 .965
=======  ========  =========  ========  ===============  ===============  ===============  ===============

Milvus Lite's BM25 is pure Python (posting lists in dicts), hence bm25 at 100k; its dense hit@10 of
0.84 is HNSW (ef=64) on random 384-dim vectors, the worst case for graph indexes (FLAT is exact).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_retrieval import lookup_embeddings, make_data, peak_mib, reset_peak, rss_mib

SYSTEMS = ("embedded", "milvus")
MODES = {"bm25": {"mode": "bm25"}, "dense": {"mode": "dense"}, "hybrid": {"mode": "hybrid"},
         "hybrid_rrf": {"mode": "hybrid", "fusion": "rrf", "weights": (1.0, 1.0)}}
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CLUSTER_NOTES = """\
On a Milvus cluster (same code, MilvusConfig only): index_type HNSW (or IVF_FLAT / DISKANN-class
indexes for >10M chunks) with M / efConstruction / ef tuned for recall; shards = write parallelism
(1 per ~10M rows or per ingest node), replicas = query parallelism / availability (load_collection
replica_number); consistency_level Bounded for throughput (Strong here: reads see every write);
BM25 statistics are global there (segment-local in Lite), and BM25 / HNSW run in C++ query nodes
instead of Lite's Python, so Lite's index throughput and latency are not a cluster's."""


def documents(texts: list[str]):
    from langchain_core.documents import Document

    return [Document(page_content=t, metadata={"source": f"doc-{i}", "row": i}) for i, t in enumerate(texts)]


def build(system: str, texts: list[str], emb, kb_dir: Path):
    common = {"chunk_size": 4000, "chunk_overlap": 0, "batch_size": 1024, "show_progress": False}
    if system == "embedded":
        from module_ai.retrieval import KnowledgeBase

        return KnowledgeBase.build(documents(texts), kb_dir, emb, **common)
    from module_ai.retrieval.milvus import MilvusKnowledgeBase

    return MilvusKnowledgeBase.build(documents(texts), kb_dir, emb, config={"index_type": "HNSW"}, **common)


def open_kb(system: str, kb_dir: Path, emb):
    if system == "embedded":
        from module_ai.retrieval import KnowledgeBase

        return KnowledgeBase.open(kb_dir, emb, show_progress=False)
    from module_ai.retrieval.milvus import MilvusKnowledgeBase

    return MilvusKnowledgeBase.open(kb_dir, emb, show_progress=False)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- child: one build
def child_build(system: str, n: int, kb_dir: Path) -> None:
    texts, vecs, queries, qvecs, _ = make_data(n, 10)
    emb = lookup_embeddings(texts, vecs, queries, qvecs)

    gc.collect()
    base = rss_mib()
    reset_peak()
    t0 = time.perf_counter()
    kb = build(system, texts, emb, kb_dir)
    secs = time.perf_counter() - t0
    peak = peak_mib()
    chunks = kb.stats()["chunks"]
    kb.close()
    print(json.dumps({"system": system, "n": n, "chunks": chunks, "build_s": secs,
                      "chunks_per_s": chunks / secs,
                      "peak_mib": peak, "delta_mib": peak - base, "disk_mib": disk_bytes(kb_dir) / 2**20}))


def builds(n: int, repeats: int, root: Path) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    rows: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    last: dict[str, Path] = {}
    for r in range(repeats):
        for system in SYSTEMS[r % 2 :] + SYSTEMS[: r % 2]:
            kb_dir = root / f"{system}-{n}-{r}"
            out = subprocess.run([sys.executable, __file__, "--child-build", system, "--sizes", str(n),
                                  "--dir", str(kb_dir)], capture_output=True, text=True, check=False,
                                 env={**os.environ, **THREAD_ENV})
            if out.returncode:
                raise SystemExit(f"{system} build failed:\n{out.stderr[-3000:]}")
            rows[system].append(json.loads(out.stdout.strip().splitlines()[-1]))
            last[system] = kb_dir
    keys = ("build_s", "chunks_per_s", "peak_mib", "delta_mib", "disk_mib")
    return {s: {k: statistics.median(x[k] for x in v) for k in keys} for s, v in rows.items()}, last


# ----------------------------------------------------------------------------- latency
def latency(n: int, n_queries: int, dirs: dict[str, Path]) -> tuple[dict, dict[str, float]]:
    texts, vecs, queries, qvecs, src = make_data(n, n_queries)
    emb = lookup_embeddings(texts, vecs, queries, qvecs)
    opened, retrievers = {}, {}
    for system in SYSTEMS:
        t0 = time.perf_counter()
        kb = open_kb(system, dirs[system], emb)
        kb.search(queries[0], k=1, mode="bm25")  # first query loads lazily (Lite: segments, jieba)
        opened[system] = time.perf_counter() - t0
        retrievers[system] = {m: kb.as_retriever(k=10, **kw) for m, kw in MODES.items()}
    out = {}
    for mode in MODES:
        times: dict[str, list[float]] = {s: [] for s in SYSTEMS}
        hits = dict.fromkeys(SYSTEMS, 0)
        for i, q in enumerate(queries):
            for system in SYSTEMS[i % 2 :] + SYSTEMS[: i % 2]:
                t0 = time.perf_counter()
                rows = [d.metadata["row"] for d in retrievers[system][mode].invoke(q)]
                times[system].append(time.perf_counter() - t0)
                hits[system] += int(src[i]) in rows[:10]
        out[mode] = {s: {"p50_ms": 1e3 * statistics.median(t), "p95_ms": 1e3 * float(np.percentile(t, 95)),
                         "hit@10": hits[s] / len(t)} for s, t in times.items()}
    return out, opened


def report(n: int, lat: dict, opened: dict[str, float], bld: dict) -> None:
    print(f"\n== {n:,} chunks (load {os.getloadavg()[0]:.2f})")
    print(f"{'system':9}{'build s':>9}{'chunks/s':>10}{'peak MiB':>10}{'delta MiB':>11}{'disk MiB':>10}"
          f"{'open s':>8}")
    for s in SYSTEMS:
        b = bld.get(s, {})
        print(f"{s:9}{b.get('build_s', float('nan')):9.1f}{b.get('chunks_per_s', float('nan')):10.0f}"
              f"{b.get('peak_mib', float('nan')):10.0f}{b.get('delta_mib', float('nan')):11.0f}"
              f"{b.get('disk_mib', float('nan')):10.1f}{opened[s]:8.2f}")
    print(f"{'mode':11}" + "".join(f"{s + ' p50':>14}{s + ' p95':>14}{'hit@10':>8}" for s in SYSTEMS)
          + f"{'p50 ratio':>11}")
    for mode, row in lat.items():
        cells = "".join(f"{row[s]['p50_ms']:14.2f}{row[s]['p95_ms']:14.2f}{row[s]['hit@10']:8.2f}"
                        for s in SYSTEMS)
        print(f"{mode:11}{cells}{row['milvus']['p50_ms'] / row['embedded']['p50_ms']:>10.1f}x")
    if bld:
        ratio = bld["embedded"]["chunks_per_s"] / bld["milvus"]["chunks_per_s"]
        print(f"index throughput embedded/milvus x{ratio:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--builds", type=int, default=1, help="fresh-process builds per system")
    ap.add_argument("--threads", choices=("one", "default"), default="one", help="BLAS/OpenMP threads")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    ap.add_argument("--child-build", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads == "one":
        os.environ.update(THREAD_ENV)
    else:
        THREAD_ENV.clear()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child_build:
        child_build(args.child_build, sizes[0], Path(args.dir))
        return
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, threads={args.threads}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_milvus_") as tmp:
        for n in sizes:
            bld, dirs = builds(n, max(1, args.builds), Path(tmp))
            lat, opened = latency(n, args.queries, dirs)
            report(n, lat, opened, bld)
            results[n] = {"build": bld, "latency": lat, "open_s": opened}
    print("\n" + CLUSTER_NOTES)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
