"""Effect of the RAG prompt profile on the local chat model: answered correctly / refused, long vs short.

Questions come from the repository's Chinese set (cmrc2018-dev-zh, every ``len/N``-th query) with
their reference answers (answers.jsonl). Each question's context is the top-``k`` 300-character
chunks that BM25 finds in the whole corpus (no embedder needed, BM25 nDCG@10 is 0.99 here), so the
answer is normally in the context. ``--unanswerable M`` adds M questions paired with another
question's context, where the right reply is the refusal. Every question runs through
``rag_chain`` twice with the same model: ``prompt_profile="default"`` (the long rules) and
``"small"``. A reply is *correct* when it contains one of the reference answers and is not a
refusal.

    python benchmarks/bench_prompt_profile.py [--questions 20] [--unanswerable 5] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "data" / "retrieval" / "cmrc2018-dev-zh"


def load(n: int) -> tuple[list[dict], list[str]]:
    from module_ai.retrieval.splitter import split_text

    queries = [json.loads(line) for line in (DATA / "queries.jsonl").open(encoding="utf-8")]
    answers = {r["_id"]: r["answers"] for r in map(json.loads, (DATA / "answers.jsonl").open(encoding="utf-8"))}
    step = max(1, len(queries) // n)
    picked = [{**q, "answers": answers[q["_id"]]} for q in queries[::step][:n]]
    chunks = []
    for row in map(json.loads, (DATA / "corpus.jsonl").open(encoding="utf-8")):
        text = f"{row['title']}\n{row['text']}"
        chunks.extend(text[a:b] for a, b in split_text(text, chunk_size=300, chunk_overlap=50))
    return picked, chunks


def bm25_top(chunks: list[str], questions: list[str], k: int) -> list[list[str]]:
    import bm25s

    from module_ai.retrieval.tokenizer import get_tokenizer

    tok = get_tokenizer()
    index = bm25s.BM25()
    index.index([tok(c) for c in chunks], show_progress=False)
    ids, _ = index.retrieve([tok(q) for q in questions], k=k, show_progress=False)
    return [[chunks[i] for i in row] for row in ids]


def run(args: argparse.Namespace) -> dict:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from module_ai import load_registry, rag_chain

    class Fixed(BaseRetriever):
        docs: list

        def _get_relevant_documents(self, query, *, run_manager=None):
            return list(self.docs)

    questions, chunks = load(args.questions + args.unanswerable)
    contexts = bm25_top(chunks, [q["text"] for q in questions], args.k)
    cases = [(q, ctx, True) for q, ctx in zip(questions[:args.questions], contexts)]
    rest = questions[args.questions:]
    cases += [(q, contexts[i], False) for i, q in enumerate(rest)]  # another question's context
    overrides = {"options": {"n_threads": args.threads}} if args.threads else {}
    llm = load_registry().chat(args.model, **overrides)
    report: dict = {"model": args.model, "k": args.k, "rows": []}
    for profile in args.profiles.split(","):
        for q, ctx, answerable in cases[args.case:args.case + 1] if args.case is not None else cases:
            docs = [Document(page_content=c, metadata={"source": f"chunk{i}"}) for i, c in enumerate(ctx, 1)]
            out = rag_chain(llm, Fixed(docs=docs), lang="zh", prompt_profile=profile).invoke(q["text"])
            correct = not out["refused"] and any(a in out["answer"] for a in q["answers"])
            row = {"profile": profile, "answerable": answerable, "question": q["text"], "answer": out["answer"],
                   "refused": out["refused"], "correct": correct, "cited": bool(out["sources"])}
            report["rows"].append(row)
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
    report["summary"] = summary(report["rows"])
    return report


def summary(rows: list[dict]) -> dict:
    out = {}
    for profile in sorted({r["profile"] for r in rows}):
        mine = [r for r in rows if r["profile"] == profile]
        ans = [r for r in mine if r["answerable"]]
        una = [r for r in mine if not r["answerable"]]
        out[profile] = {"answerable": len(ans), "correct": sum(r["correct"] for r in ans),
                        "refused_answerable": sum(r["refused"] for r in ans),
                        "cited": sum(r["cited"] for r in ans),
                        "unanswerable": len(una), "refused_unanswerable": sum(r["refused"] for r in una)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--unanswerable", type=int, default=5)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=None, help="n_threads override (default: the machine's)")
    parser.add_argument("--profiles", default="default,small")
    parser.add_argument("--case", type=int, default=None, help="run only this case (for parallel runs)")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
