"""Answer-level RAG evaluation: correctness, citations, refusals, groundedness, latency and cost.

For a seeded sample of questions from a BEIR-layout set with ``answers.jsonl`` (gold answer spans), the
questions are put to :func:`module_ai.chains.rag.rag_chain` over one index built from the corpus **without**
the relevant passages of half of them: those become *unanswerable* (same question, its passage
removed), the other half stay *answerable* (their passages are in the index). See
:mod:`module_ai.chains.answer_report` for the metric definitions.

Example:
    >>> report = evaluate_answers("data/retrieval/cmrc2018-dev-zh", reg.chat("qwen2.5-coder-0.5b"),
    ...                           reg.embeddings("multilingual-e5-small"), sample=10)  # doctest: +SKIP
    >>> report["answers"]["correct"], report["answers"]["hallucination"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from module_ai.chains.answer_metrics import has_cjk, is_refusal
from module_ai.chains.answer_report import apply_settings, min_score_curve, summarize, worst_examples
from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.evaluate import load_beir

__all__ = ["SPLITS", "evaluate_answers", "load_answers", "sample_questions"]

SPLITS = ("all", "tune", "heldout")
"""``tune`` and ``heldout`` are disjoint halves of the queries (by a hash of the query id)."""


def load_answers(dataset_dir: str | Path) -> dict[str, list[str]]:
    """``{query_id: [gold answer, ...]}`` from ``answers.jsonl`` (``{"_id", "answers"}`` per line)."""
    path = Path(dataset_dir) / "answers.jsonl"
    try:
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return {str(r["_id"]): [str(a) for a in r["answers"] if str(a).strip()] for r in rows}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise KnowledgeBaseError(f"cannot read gold answers ({exc}); answer evaluation needs answers.jsonl "
                                 "with one {\"_id\", \"answers\": [...]} object per line", path=str(path)) from exc


def _in_split(qid: str, split: str) -> bool:
    if split == "all":
        return True
    odd = hashlib.sha1(qid.encode("utf-8")).digest()[0] % 2 == 1
    return odd if split == "heldout" else not odd


def sample_questions(qrels: Mapping[str, Mapping[str, float]], answers: Mapping[str, Sequence[str]], n: int,
                     *, seed: int = 0, split: str = "all") -> tuple[list[str], list[str], set[str]]:
    """Pick ``n`` answerable and ``n`` unanswerable query ids (seeded) and the passages to remove.

    Returns:
        ``(answerable, unanswerable, removed)``: unanswerable questions' relevant passages are
        ``removed`` from the index; answerable ones are chosen among questions whose passages stay.
    """
    import numpy as np

    if split not in SPLITS:
        raise KnowledgeBaseError(f"split must be one of {SPLITS}, not {split!r}", field="split")
    eligible = sorted(q for q in qrels if answers.get(q) and _in_split(q, split))
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]
    unanswerable = order[:n]
    removed = {d for q in unanswerable for d in qrels[q]}
    answerable = [q for q in order[n:] if not removed & set(qrels[q])][:n]
    if len(answerable) < n or len(unanswerable) < n:
        raise KnowledgeBaseError(f"only {len(eligible)} questions with gold answers in split {split!r}: "
                                 f"cannot sample {n} answerable and {n} unanswerable", field="sample")
    return answerable, unanswerable, removed


def _build_index(corpus: Mapping[str, Mapping[str, str]], removed: set[str], embeddings: Any, model: str,
                 kb_dir: Path, show_progress: bool) -> Any:
    from langchain_core.documents import Document

    from module_ai.retrieval.embedded.kb import KnowledgeBase

    texts = {d: f"{v['title']}\n{v['text']}" if v["title"] else v["text"] for d, v in corpus.items() if d not in removed}
    docs = [Document(page_content=t, metadata={"source": d}) for d, t in texts.items()]
    longest = max(len(t) for t in texts.values())  # one block per passage: the unit the qrels judge
    return KnowledgeBase.build(docs, kb_dir, embeddings, embedding_model_name=model, chunk_size=longest + 1,
                               chunk_overlap=0, show_progress=show_progress)


def _sentences(answer: str, blocks: Sequence[str], embed: Any) -> list[dict[str, Any]]:
    from module_ai.chains.context import citations, split_sentences
    from module_ai.chains.grounding import _embedding_support, lexical_support

    out = []
    for text in split_sentences(answer):
        cites = [n for n in citations(text) if 1 <= n <= len(blocks)]
        evidence = [blocks[n - 1] for n in cites]
        row: dict[str, Any] = {"text": text, "citations": cites,
                               "lexical": round(lexical_support(text, "\n".join(evidence)), 3) if cites else 0.0}
        if embed is not None:
            row["embedding"] = round(_embedding_support(text, evidence, embed), 3) if cites else 0.0
        out.append(row)
    return out


def _ask(chain: Any, qid: str, question: str, kind: str, gold: list[str], relevant: set[str],
         texts: Mapping[str, str], refusal: str, lang: str, embed: Any) -> dict[str, Any]:
    from module_ai.controls.usage import UsageTracker
    from module_ai.errors import ContextWindowError

    error = None
    with UsageTracker(keep_records=True) as usage:
        start = time.perf_counter()
        try:
            out = chain.invoke(question)
        except ContextWindowError as exc:  # one over-long context is scored as a refusal, not a crash
            out, error = {"answer": "", "refused": True}, str(exc)
        latency = time.perf_counter() - start
    chat = [r for r in usage.records if r.kind == "chat"]
    answer = str(out.get("answer") or "")
    contexts = [c["source"] for c in out.get("contexts", [])]
    refused = bool(out.get("refused")) or is_refusal(answer, refusal)
    return {"id": qid, "kind": kind, "question": question, "gold": gold, "answer": answer, "refused": refused,
            "model_called": bool(chat), "top_score": out.get("top_score"), "coverage": out.get("coverage"),
            "contexts": contexts, "relevant_blocks": [i for i, c in enumerate(contexts, 1) if c in relevant],
            "n_blocks": len(contexts), "grounded": bool(out.get("grounded")) and not refused,
            "sentences": [] if refused else _sentences(answer, [texts[c] for c in contexts], embed),
            "latency_s": round(latency, 3), "tokens": sum(r.input_tokens + r.output_tokens for r in chat),
            "cost": sum(r.cost for r in usage.records), "error": error}


def evaluate_answers(
    dataset_dir: str | Path,
    llm: Any,
    embeddings: Any,
    *,
    sample: int = 10,
    seed: int = 0,
    split: str = "all",
    lang: str | None = None,
    k: int = 5,
    mode: str | None = None,
    reranker: Any = None,
    min_score: float | None = None,
    min_coverage: float | None = None,
    check_embeddings: Any = None,
    embedding_model_name: str | None = None,
    cache_dir: str | Path | None = None,
    worst: int = 5,
    show_progress: bool = False,
    **chain_options: Any,
) -> dict[str, Any]:
    """Put ``sample`` answerable and ``sample`` unanswerable questions to ``rag_chain`` and score the answers.

    Args:
        dataset_dir: BEIR-layout folder with ``answers.jsonl``.
        llm: the chat model answering.
        embeddings: the index's embedding model.
        sample: questions of each kind (seeded by ``seed``, from ``split``: ``all``, ``tune``, ``heldout``).
        lang: ``zh``/``en`` prompts and scoring (default: ``zh`` when the queries hold CJK text).
        k, mode, reranker, min_score, min_coverage: as for :func:`module_ai.chains.rag.rag_chain` (a
            reranker sees the top 20 retrieved).
        check_embeddings: also measure embedding support per sentence (the embedding groundedness check).
        embedding_model_name: cache key of ``embeddings``.
        cache_dir: keep the index (and its embedding cache) here for repeated runs; default a temp dir.
        worst: how many worst examples to report.
        **chain_options: passed to :func:`module_ai.chains.rag.rag_chain` (``embeddings``, ``judge_llm``,
            ``prompts_dir``, ...).

    Returns:
        ``{"dataset", "settings", "answers": {"n", "correct", "f1", "citation_precision",
        "citation_recall", "false_refusal", "hallucination", ...}, "checks", "policies",
        "min_score_curve", "min_coverage_curve", "worst", "records"}``.
    """
    from module_ai.chains.rag import rag_chain, refusal_text
    from module_ai.retrieval.embedding import model_name_of

    corpus, queries, qrels = load_beir(dataset_dir)
    gold = load_answers(dataset_dir)
    lang = lang or ("zh" if any(has_cjk(t) for t in list(queries.values())[:50]) else "en")
    answerable, unanswerable, removed = sample_questions(qrels, gold, sample, seed=seed, split=split)
    model = embedding_model_name or model_name_of(embeddings)
    with tempfile.TemporaryDirectory() as tmp:
        kb_dir = Path(cache_dir) / f"answers-{Path(dataset_dir).name}-{model.replace('/', '_')}" if cache_dir \
            else Path(tmp) / "kb"
        kb = _build_index(corpus, removed, embeddings, model, kb_dir, show_progress)
        retriever = kb.as_retriever(k=max(k, 20) if reranker is not None else k, mode=mode)
        chain = rag_chain(llm, retriever, reranker=reranker, k=k, min_score=min_score,
                          min_coverage=min_coverage, lang=lang, **chain_options)
        texts = {d: f"{v['title']}\n{v['text']}" if v["title"] else v["text"] for d, v in corpus.items()}
        refusal = refusal_text(lang, chain_options.get("prompts_dir"))
        embed = check_embeddings.embed_documents if check_embeddings is not None else None
        records = [_ask(chain, q, queries[q], kind, gold[q], set(qrels[q]), texts, refusal, lang, embed)
                   for kind, ids in (("answerable", answerable), ("unanswerable", unanswerable)) for q in ids]
        kb.close()
    settings = {"sample": sample, "seed": seed, "split": split, "lang": lang, "k": k, "mode": mode,
                "reranker": type(reranker).__name__ if reranker is not None else None, "min_score": min_score,
                "min_coverage": min_coverage}
    return {"dataset": Path(dataset_dir).name, "settings": settings, "answers": summarize(records, lang),
            **variants(records, lang, refusal, embed is not None),
            "min_score_curve": min_score_curve(records, lang=lang, refusal=refusal),
            "min_coverage_curve": min_score_curve(records, lang=lang, refusal=refusal, key="coverage"),
            "worst": worst_examples(records, worst, lang), "records": records}


def variants(records: Sequence[Mapping[str, Any]], lang: str, refusal: str, embedding: bool) -> dict[str, Any]:
    """Metrics of the groundedness checks (as wrong-answer flags) and of the answer policies."""
    checks = ["lexical", "embedding"] if embedding else ["lexical"]
    keys = ("grounded", "flag_precision", "flag_recall")
    out: dict[str, Any] = {"checks": {}, "policies": {}}
    for check in checks:
        m = summarize([apply_settings(r, check=check, refusal=refusal) for r in records], lang)
        out["checks"][check] = {key: m[key] for key in keys}
        for policy in ("supported_only", "refuse_ungrounded"):
            p = summarize([apply_settings(r, check=check, policy=policy, refusal=refusal) for r in records], lang)
            out["policies"][f"{policy}:{check}"] = {key: p[key] for key in
                                                    ("correct", "f1", "false_refusal", "hallucination")}
    return out
