"""``module-ai rag index|ask|eval``: build, query and tune a knowledge base from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from module_ai._redact import printable
from module_ai.chains.rag import DEFAULT_MIN_COVERAGE
from module_ai.commands import DEFAULT_CHAT, DEFAULT_EMBEDDING
from module_ai.commands._rag_ask import (
    SCALE_NOTE,
    answer_or_evidence,
    default_chat,
    print_answer,
)
from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["DEFAULT_CHAT", "DEFAULT_EMBEDDING", "answer_or_evidence", "default_chat", "open_kb", "register"]

BACKENDS = ("embedded", "milvus")


def register(subparsers: Any) -> None:
    """Add ``rag`` with its ``index``, ``ask`` and ``eval`` subcommands."""
    rag = subparsers.add_parser("rag", help="knowledge base: index documents, ask questions, evaluate")
    sub = rag.add_subparsers(dest="rag_command", metavar="SUBCOMMAND", parser_class=type(rag))
    sub.required = True
    p = sub.add_parser("index", help="index a folder or files (incremental when the index exists)")
    p.add_argument("docs", nargs="+", help="folder(s) or files: .md .txt .html .pdf .docx")
    _kb_options(p)
    p.add_argument("--embedding", default=None, help=f"embedding model name (default {DEFAULT_EMBEDDING})")
    p.add_argument("--metric", choices=["cosine", "ip", "l2"], default="cosine")
    p.add_argument("--chunk-size", type=int, default=500)
    p.add_argument("--chunk-overlap", type=int, default=80)
    p.add_argument("--rebuild", action="store_true", help="rebuild from scratch instead of syncing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_index)
    p = sub.add_parser("ask", help="answer a question from the knowledge base, with citations")
    p.add_argument("question")
    _kb_options(p)
    _query_options(p)
    p.set_defaults(func=run_ask)
    p = sub.add_parser("stats", help="what the knowledge base holds (chunks, sources, model, settings)")
    _kb_options(p)
    p.set_defaults(func=run_stats)
    p = sub.add_parser("delete", help="remove one source (file) from the knowledge base")
    p.add_argument("source", help="the source path as indexed (see: module-ai rag stats)")
    _kb_options(p)
    p.set_defaults(func=run_delete)
    p = sub.add_parser("eval", help="evaluate bm25/dense/hybrid(+rerank) on a BEIR-layout data set")
    p.add_argument("data", help="folder with corpus.jsonl, queries.jsonl, qrels.tsv")
    p.add_argument("--embedding", default=DEFAULT_EMBEDDING)
    p.add_argument("--rerank", default=None, help="reranker model name (adds hybrid_rerank)")
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--backend", choices=BACKENDS, default="embedded")
    p.add_argument("--save-best", metavar="KB", default=None, help="store the best setting in this index")
    p.add_argument("--collection", default="module_ai_kb", help="Milvus collection of --save-best")
    p.add_argument("--json", action="store_true")
    _answer_options(p)
    p.set_defaults(func=run_eval)


def _answer_options(p: Any) -> None:
    g = p.add_argument_group("answer evaluation (--answers; needs answers.jsonl in DATA)")
    g.add_argument("--answers", action="store_true", help="evaluate generated answers instead of retrieval")
    g.add_argument("--sample", type=int, default=10, help="answerable and unanswerable questions each (10)")
    g.add_argument("--chat", default=None, help="chat model name (default: $MODULE_AI_CHAT)")
    g.add_argument("--k", type=int, default=5, help="context chunks")
    g.add_argument("--min-score", type=float, default=None, help="refuse under this retrieval score")
    g.add_argument("--min-coverage", type=float, default=DEFAULT_MIN_COVERAGE,
                   help="refuse when less of the question (0..1) is found in the best passage "
                   f"({DEFAULT_MIN_COVERAGE}; 0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", choices=["all", "tune", "heldout"], default="all",
                   help="disjoint halves of the queries: tune on one, report the other")
    g.add_argument("--check-embedding", action="store_true",
                   help="also measure the embedding groundedness check (with --embedding)")
    g.add_argument("--worst", type=int, default=5, help="worst examples shown")


def _kb_options(p: Any) -> None:
    p.add_argument("--kb", default="kb", help="index folder (Milvus: a .db file or URI)")
    p.add_argument("--backend", choices=BACKENDS, default="embedded")
    p.add_argument("--collection", default="module_ai_kb", help="Milvus collection name")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _query_options(p: Any) -> None:
    p.add_argument("--chat", default=None, help=f"chat model name (default: $MODULE_AI_CHAT, else {DEFAULT_CHAT} "
                   "when installed; 'none': show the evidence only)")
    p.add_argument("--rerank", default=None, help="reranker model name")
    p.add_argument("--k", type=int, default=5, help="context chunks")
    p.add_argument("--mode", choices=["hybrid", "bm25", "dense"], default=None)
    p.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="relevance 0..1 (reranker score, else cosine similarity) a chunk needs; none: 'no matches'")
    p.add_argument("--min-coverage", type=float, default=DEFAULT_MIN_COVERAGE,
                   help="refuse when less of the question (0..1) is found in the best passage "
                   f"({DEFAULT_MIN_COVERAGE}; 0: off)")
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--json", action="store_true")


def open_kb(args: Any, reg: Any, *, create_from: list[str] | None = None, embedding: str | None = None) -> Any:
    """Open (or, with ``create_from``, build or sync) the knowledge base named by ``args``."""
    if args.backend == "milvus":
        from module_ai.commands._milvus import open_milvus_kb

        return open_milvus_kb(args, reg, create_from=create_from, embedding=embedding)
    from module_ai.retrieval import KnowledgeBase
    from module_ai.retrieval.embedded.store import read_manifest

    kb_dir = Path(args.kb)
    exists = (kb_dir / "manifest.json").exists()
    name = embedding or (read_manifest(kb_dir)["embedding_model"] if exists else DEFAULT_EMBEDDING)
    cfg = reg.config(name)
    options = {"batch_size": cfg.max_batch or 32, "max_concurrency": cfg.max_concurrency or 2,
               "show_progress": not getattr(args, "quiet", False)}
    if create_from is None and not exists:
        raise ConfigError(f"no knowledge base in '{kb_dir}'; build one with: module-ai rag index DOCS --kb {kb_dir}",
                          field="--kb")
    if create_from is not None and (getattr(args, "rebuild", False) or not exists):
        return KnowledgeBase.build(create_from if len(create_from) > 1 else create_from[0], kb_dir,
                                   reg.embeddings(name), embedding_model_name=name, dimensions=cfg.dimensions,
                                   metric=args.metric, chunk_size=args.chunk_size,
                                   chunk_overlap=args.chunk_overlap, **options)
    kb = KnowledgeBase.open(kb_dir, reg.embeddings(name), embedding_model_name=name, **options)
    if create_from is not None:
        for folder in create_from:
            kb.sync(folder) if Path(folder).is_dir() else kb.add_paths([folder])
    return kb


def run_index(args: Any) -> int:
    import time

    reg = load_registry(args.config)
    for doc in args.docs:
        if not Path(doc).exists():
            raise ConfigError(f"'{doc}' does not exist", field="docs")
    start = time.perf_counter()
    kb = open_kb(args, reg, create_from=args.docs, embedding=args.embedding)
    summary = index_summary(kb, args.kb, time.perf_counter() - start)
    print(json.dumps(summary, ensure_ascii=False, indent=2) if args.json else format_index_summary(summary))
    return 0


def index_summary(kb: Any, where: str, seconds: float) -> dict[str, Any]:
    """What ``rag index`` did: files added/updated/deleted/unchanged, chunks, embeddings made, time."""
    stats = kb.stats()
    report = getattr(kb, "last_report", None)
    files = {key: list(getattr(report, key, []) or []) for key in ("added", "updated", "deleted", "unchanged")}
    return {"kb": str(where), "files": files, "chunks_added": getattr(report, "chunks_added", None),
            "chunks_removed": getattr(report, "chunks_removed", None),
            "embedded": getattr(report, "embedded", None), "chunks": stats.get("chunks"),
            "sources": stats.get("sources"), "embedding_model": stats.get("embedding_model"),
            "skipped": {str(path): str(why) for path, why in (getattr(report, "skipped", None) or {}).items()},
            "seconds": round(seconds, 2)}


def format_index_summary(summary: dict[str, Any]) -> str:
    """The index summary as a few readable lines."""
    files = summary["files"]
    counts = ", ".join(f"{len(files[key])} {key}" for key in ("added", "updated", "deleted", "unchanged"))
    lines = [f"indexed into {summary['kb']} in {summary['seconds']:.2f} s ({summary['embedding_model']})",
             f"  files:      {counts}",
             (f"  chunks:     {summary['chunks_added'] or 0} added, {summary['chunks_removed'] or 0} removed, "
              f"{summary['chunks']} in the index from {summary['sources']} sources"),
             f"  embeddings: {summary['embedded'] or 0} computed (the rest reused from the cache)"]
    lines += [f"skipped {printable(path)}: {printable(why)}" for path, why in summary["skipped"].items()]
    return "\n".join(lines)


def run_stats(args: Any) -> int:
    kb = open_kb(args, load_registry(args.config))
    print(json.dumps(kb.stats(), ensure_ascii=False, indent=2, default=str))
    return 0


def run_delete(args: Any) -> int:
    kb = open_kb(args, load_registry(args.config))
    if args.source not in kb.sources() and str(Path(args.source).resolve()) not in kb.sources():
        raise ConfigError(f"'{args.source}' is not an indexed source; see: module-ai rag stats --kb {args.kb}",
                          field="source")
    report = kb.delete_source(args.source)
    print(f"deleted {args.source} ({report})")
    return 0


def run_ask(args: Any) -> int:
    reg = load_registry(args.config)
    kb = open_kb(args, reg)
    out = answer_or_evidence(kb, reg, args.question, args)
    if args.json:
        print(json.dumps({**out, "scale": SCALE_NOTE}, ensure_ascii=False, indent=2))
        return 0
    print_answer(out)
    return 0


def run_eval(args: Any) -> int:
    if args.answers:
        from module_ai.commands._rag_answers import run_answer_eval

        return run_answer_eval(args)
    from module_ai.commands._rag_eval import run_evaluation

    result = run_evaluation(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    from module_ai.commands._rag_eval import results_table

    print(results_table(result))
    return 0
