"""``module-ai rag index|ask|eval``: build, query and tune a knowledge base from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from module_ai._redact import printable
from module_ai.chains.rag import DEFAULT_MIN_COVERAGE
from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["DEFAULT_CHAT", "DEFAULT_EMBEDDING", "answer_or_evidence", "default_chat", "open_kb", "register"]

DEFAULT_EMBEDDING = "multilingual-e5-small"
DEFAULT_CHAT = "qwen2.5-coder-0.5b"
"""The embedded defaults: built-in configs, installed by ``pip install 'module_ai[embedded]'``."""
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
    p.add_argument("--min-score", type=float, default=None, help="refuse under this retrieval score")
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
    reg = load_registry(args.config)
    for doc in args.docs:
        if not Path(doc).exists():
            raise ConfigError(f"'{doc}' does not exist", field="docs")
    kb = open_kb(args, reg, create_from=args.docs, embedding=args.embedding)
    stats = kb.stats()
    report = getattr(kb, "last_report", None)
    print(f"indexed {stats['chunks']} chunks from {stats['sources']} sources into {args.kb}"
          + (f" ({report})" if report else ""))
    for path, why in (getattr(report, "skipped", None) or {}).items():
        print(f"skipped {printable(path)}: {printable(why)}")
    return 0


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


def default_chat(reg: Any) -> str | None:
    """:data:`DEFAULT_CHAT` when its config is in ``reg`` and its packages are installed, else ``None``."""
    import importlib.util
    from importlib import metadata

    if DEFAULT_CHAT not in reg or importlib.util.find_spec("llama_cpp") is None:
        return None
    spec = reg.config(DEFAULT_CHAT).model_file
    try:
        for part in spec.parts if spec else []:
            metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        return None
    return DEFAULT_CHAT


def answer_or_evidence(kb: Any, reg: Any, question: str, args: Any) -> dict[str, Any]:
    """Answer with a chat model (``--chat``, ``$MODULE_AI_CHAT``, else the local default), else show evidence."""
    import os

    from module_ai.chains.rag import rag_chain, source_entry

    chat = args.chat or os.environ.get("MODULE_AI_CHAT") or default_chat(reg)
    chat = None if chat == "none" else chat
    reranker = reg.reranker(args.rerank) if args.rerank else None
    retriever = kb.as_retriever(k=max(args.k, 20) if reranker else args.k, mode=args.mode)
    if not chat:
        docs = retriever.invoke(question)
        if reranker is not None:
            docs = list(reranker.compress_documents(docs, question))
        return {"question": question, "answer": None, "evidence": [source_entry(i, d) for i, d in
                                                                   enumerate(docs[:args.k], 1)]}
    chain = rag_chain(reg.chat(chat), retriever, reranker=reranker, k=args.k, min_score=args.min_score,
                      min_coverage=args.min_coverage, lang=args.lang)
    if args.json:
        return chain.invoke(question)
    final: dict[str, Any] = {}
    for piece in chain.stream(question):
        if "answer" in piece:
            sys.stdout.write(piece["answer"])
            sys.stdout.flush()
        final.update({k: v for k, v in piece.items() if k != "answer"})
    sys.stdout.write("\n")
    return {**final, "streamed": True}


def run_ask(args: Any) -> int:
    reg = load_registry(args.config)
    kb = open_kb(args, reg)
    out = answer_or_evidence(kb, reg, args.question, args)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    _print_answer(out)
    return 0


def _print_answer(out: dict[str, Any]) -> None:
    if out.get("answer") is None and not out.get("streamed"):
        print("No chat model configured: showing the evidence. Set --chat NAME or MODULE_AI_CHAT=NAME, or "
              f"install the local one ({DEFAULT_CHAT}): pip install 'module_ai[embedded]'.")
        for e in out["evidence"]:
            snippet = " ".join(e["snippet"].split())
            print(f"[{e['index']}] {e['source']}  score={_fmt(e['score'])}\n    {snippet}")
        return
    if not out.get("streamed"):
        print(out["answer"])
    for s in out.get("sources", []):
        print(f"  [{s['index']}] {s['source']}  score={_fmt(s['score'])}")
    status = "refused" if out.get("refused") else ("grounded" if out.get("grounded") else "NOT grounded")
    print(f"  ({status}; unsupported sentences: {len(out.get('unsupported', []))})")


def _fmt(score: Any) -> str:
    return f"{score:.3f}" if isinstance(score, (int, float)) else str(score)


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
