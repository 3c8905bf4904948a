"""``module-ai rag ask`` (and ``demo``): answer with a chat model or show the evidence, and print it."""

from __future__ import annotations

import sys
from typing import Any

from module_ai.commands import DEFAULT_CHAT
from module_ai.errors import ConfigError

__all__ = ["SCALE_NOTE", "answer_or_evidence", "default_chat", "print_answer"]

SCALE_NOTE = ("relevance is 0..1: the reranker's relevance_score (rerank) or the dense cosine similarity "
              "clipped at 0 (cosine); fused is the hybrid ranking value, unbounded, for ordering only")
"""What the printed scores mean (shown with every ``rag ask`` result)."""


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


def _check_min_score(args: Any) -> None:
    if args.min_score is None:
        return
    if not 0 <= args.min_score <= 1:
        raise ConfigError(f"--min-score is a relevance between 0 and 1, got {args.min_score}", field="--min-score")
    if args.mode == "bm25" and not args.rerank:
        raise ConfigError("--min-score needs a 0..1 relevance, which BM25 scores are not; use --mode hybrid or "
                          "dense, or add --rerank NAME", field="--min-score")


def answer_or_evidence(kb: Any, reg: Any, question: str, args: Any) -> dict[str, Any]:
    """Answer with a chat model (``--chat``, ``$MODULE_AI_CHAT``, else the local default), else the evidence.

    ``--min-score`` applies either way: without a chat model chunks under it are dropped; with one,
    the question is refused without calling the model when no chunk reaches it (``no_matches``).
    """
    import os

    from module_ai.chains.context import relevance, source_entry
    from module_ai.chains.rag import rag_chain

    _check_min_score(args)
    chat = args.chat or os.environ.get("MODULE_AI_CHAT") or default_chat(reg)
    chat = None if chat == "none" else chat
    reranker = reg.reranker(args.rerank) if args.rerank else None
    retriever = kb.as_retriever(k=max(args.k, 20) if reranker else args.k, mode=args.mode)
    if not chat:
        docs = retriever.invoke(question)
        if reranker is not None:
            docs = list(reranker.compress_documents(docs, question))
        docs = docs[:args.k]
        best = max((relevance(d.metadata)[0] or 0.0 for d in docs), default=None)
        if args.min_score is not None:
            docs = [d for d in docs if (relevance(d.metadata)[0] or 0.0) >= args.min_score]
        return {"question": question, "answer": None, "no_matches": not docs, "min_score": args.min_score,
                "best_relevance": best, "evidence": [source_entry(i, d) for i, d in enumerate(docs, 1)]}
    chain = rag_chain(reg.chat(chat), retriever, reranker=reranker, k=args.k, min_score=args.min_score,
                      min_coverage=args.min_coverage, lang=args.lang)
    if args.json:
        return _with_no_matches(chain.invoke(question), args)
    final: dict[str, Any] = {}
    for piece in chain.stream(question):
        if "answer" in piece:
            sys.stdout.write(piece["answer"])
            sys.stdout.flush()
        final.update({k: v for k, v in piece.items() if k != "answer"})
    sys.stdout.write("\n")
    return _with_no_matches({**final, "streamed": True}, args)


def _with_no_matches(out: dict[str, Any], args: Any) -> dict[str, Any]:
    """Mark a refusal caused by ``--min-score`` (or an empty index) as ``no_matches``."""
    contexts = out.get("contexts") or []
    top = out.get("top_score")
    below = args.min_score is not None and (top is None or top < args.min_score)
    return {**out, "no_matches": bool(out.get("refused")) and (not contexts or below),
            "min_score": args.min_score}


def _no_matches_line(out: dict[str, Any]) -> str:
    best = out.get("best_relevance", out.get("top_score"))
    if out.get("min_score") is None:
        return "no matches: the knowledge base returned nothing for this question"
    return (f"no matches: no chunk reaches --min-score {out['min_score']:g} "
            f"(best relevance {_fmt(best)}; {SCALE_NOTE})")


def print_answer(out: dict[str, Any]) -> None:
    if out.get("answer") is None and not out.get("streamed"):
        if out.get("no_matches"):
            print(_no_matches_line(out))
            return
        print("No chat model configured: showing the evidence. Set --chat NAME or MODULE_AI_CHAT=NAME, or "
              f"install the local one ({DEFAULT_CHAT}): pip install 'module_ai[embedded]'.")
        print(f"({SCALE_NOTE})")
        for e in out["evidence"]:
            print(f"[{e['index']}] {e['source']}  {_scores(e)}\n    {e['snippet']}")
        return
    if not out.get("streamed"):
        print(out["answer"])
    if out.get("no_matches"):
        print(f"  ({_no_matches_line(out)}; the model was not asked)")
        return
    for s in out.get("sources", []):
        print(f"  [{s['index']}] {s['source']}  {_scores(s)}")
    status = "refused" if out.get("refused") else ("grounded" if out.get("grounded") else "NOT grounded")
    print(f"  ({status}; unsupported sentences: {len(out.get('unsupported', []))})")


def _scores(entry: dict[str, Any]) -> str:
    """``relevance 0.734 (cosine)  fused 1.92``: the 0..1 value first, the raw ranking value beside it."""
    rel = entry.get("relevance")
    head = f"relevance {rel:.3f} ({entry.get('relevance_from')})" if rel is not None else "relevance - (bm25)"
    return f"{head}  fused {_fmt(entry.get('fused_score'))}"


def _fmt(score: Any) -> str:
    return f"{score:.3f}" if isinstance(score, (int, float)) else str(score)
