"""``module-ai rerank NAME "query" DOC... [--file F] [--top-n N] [--threshold S] [--json]``.

Documents come from the arguments first, then from ``--file`` (one document per line, blank lines
skipped, ``-`` for standard input); ``index`` in the output is the position in that combined list.
"""

from __future__ import annotations

import json
from typing import Any

from module_ai.commands import read_utf8
from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["read_documents", "register", "run_rerank"]

SNIPPET_CHARS = 60


def register(subparsers: Any) -> None:
    """Add ``rerank`` to the CLI."""
    p = subparsers.add_parser("rerank", help="rerank documents for a query with a rerank model")
    p.add_argument("name", metavar="NAME", help="rerank model name (module-ai models --type rerank)")
    p.add_argument("query", help="the question")
    p.add_argument("docs", nargs="*", metavar="DOC", help="candidate documents")
    p.add_argument("--file", "-f", help="read more documents from this file, one per line ('-' = stdin)")
    p.add_argument("--top-n", "-n", type=int, default=None, help="show only the best N")
    p.add_argument("--threshold", type=float, default=None, help="drop results whose relevance_score is lower")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_rerank, intermixed="docs")


def read_documents(docs: list[str], file: str | None) -> list[str]:
    """The documents of the command line: arguments, then the lines of ``file``."""
    out = list(docs)
    if file:
        text = read_utf8(file, "documents file", "--file")
        out += [line.strip() for line in text.splitlines() if line.strip()]
    return out


def run_rerank(args: Any) -> int:
    docs = read_documents(args.docs, args.file)
    if not docs:
        raise ConfigError("no documents to rerank; pass DOC arguments or --file F")
    if args.top_n is not None and args.top_n < 1:
        raise ConfigError(f"--top-n must be at least 1, got {args.top_n}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold is a relevance_score between 0 and 1, got {args.threshold}")
    reranker = load_registry(args.config).reranker(args.name)
    updates = {k: v for k, v in (("top_n", args.top_n), ("score_threshold", args.threshold)) if v is not None}
    if updates:  # the command line wins over the config's options
        reranker = reranker.model_copy(update=updates)
    from langchain_core.documents import Document

    ranked = reranker.compress_documents([Document(page_content=d) for d in docs], args.query)
    rows = [{"rank": r + 1, "index": d.metadata["rerank_index"], "relevance_score": d.metadata["relevance_score"],
             "raw_score": d.metadata["raw_score"], "fallback": bool(d.metadata.get("rerank_fallback")),
             "text": d.page_content} for r, d in enumerate(ranked)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'rank':>4}  {'index':>5}  {'score':>6}  {'raw':>9}  text")
    for row in rows:
        raw = "-" if row["raw_score"] is None else f"{row['raw_score']:.4g}"
        mark = " (fallback)" if row["fallback"] else ""
        print(f"{row['rank']:>4}  {row['index']:>5}  {row['relevance_score']:>6.3f}  {raw:>9}  "
              f"{_snippet(row['text'])}{mark}")
    return 0


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
