"""Pure functions from per-question answer records to the metrics, curves and worst examples.

A *record* is one question put to the chain (see :func:`module_ai.chains.answer_eval.evaluate_answers`):
``kind`` (``"answerable"`` or ``"unanswerable"``), ``gold`` answers, the ``answer``, ``refused``,
``top_score`` (the score the chain compares with ``min_score``), ``relevant_blocks`` (context block
numbers holding the relevant passage), ``n_blocks``, and ``sentences`` (per answer sentence: ``text``,
``citations``, ``lexical`` and, when measured, ``embedding`` support). Settings that act after
retrieval (a ``min_score`` refusal, a groundedness check, an "answer with the supported sentences
only" policy) are applied here to the same records, so one run of the model scores many settings
exactly as the chain would have run them.

Metric definitions (all shares 0..1):

- ``correct``: answerable questions answered with a gold answer inside the answer; ``f1``: their mean
  best F1 (a refusal scores 0).
- ``citation_precision``: over answered answerable questions, markers naming a block that holds the
  relevant passage / all markers; ``citation_recall``: answered answerable questions whose context
  held the relevant passage (they needed a citation of it) that cite it at least once.
- ``false_refusal``: answerable questions refused; ``hallucination``: unanswerable questions answered.
- ``flag_precision`` / ``flag_recall``: the groundedness check as a detector of wrong answers (a
  hallucination or an incorrect answer) among answered questions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from module_ai.chains.answer_metrics import answer_contains, answer_f1, citation_scores
from module_ai.chains.grounding import EMBEDDING_SUPPORT_THRESHOLD, LEXICAL_SUPPORT_THRESHOLD

__all__ = ["apply_settings", "choose_threshold", "min_score_curve", "sentence_supported", "summarize", "worst_examples"]

CHECKS = ("lexical", "embedding")
POLICIES = ("keep", "supported_only", "refuse_ungrounded")


def sentence_supported(sentence: Mapping[str, Any], check: str = "lexical") -> bool:
    """The groundedness rule of :mod:`module_ai.chains.grounding` on a stored sentence."""
    if not sentence["citations"]:
        return False
    if sentence["lexical"] >= LEXICAL_SUPPORT_THRESHOLD:
        return True
    return check == "embedding" and (sentence.get("embedding") or 0.0) >= EMBEDDING_SUPPORT_THRESHOLD


def _under(record: Mapping[str, Any], key: str, threshold: float | None) -> bool:
    value = record.get(key)
    return threshold is not None and (value is None or value < threshold)


def apply_settings(record: Mapping[str, Any], *, min_score: float | None = None,
                   min_coverage: float | None = None, check: str = "lexical", policy: str = "keep",
                   refusal: str = "") -> dict[str, Any]:
    """A new record as the chain with these settings would have produced it (input unchanged).

    ``min_score`` / ``min_coverage``: refuse when ``top_score`` / ``coverage`` is lower (or missing).
    ``policy``: ``keep`` the answer, ``supported_only`` keeps the sentences the ``check`` supports
    (none left: a refusal), or ``refuse_ungrounded`` refuses any answer with an unsupported sentence.
    """
    out = dict(record)
    if not record["refused"] and (_under(record, "top_score", min_score) or _under(record, "coverage", min_coverage)):
        return {**out, "answer": refusal, "refused": True, "sentences": [], "grounded": False}
    if record["refused"]:
        return out
    flags = [sentence_supported(s, check) for s in record["sentences"]]
    out["grounded"] = all(flags)
    if policy == "keep" or all(flags):
        return out
    kept = [s for s, ok in zip(record["sentences"], flags) if ok]
    if policy == "refuse_ungrounded" or not kept:
        return {**out, "answer": refusal, "refused": True, "sentences": []}
    return {**out, "answer": "".join(s["text"] for s in kept), "sentences": kept}


def _share(hits: Iterable[bool]) -> float | None:
    items = list(hits)
    return round(sum(items) / len(items), 4) if items else None


def _scored(record: Mapping[str, Any], lang: str) -> dict[str, Any]:
    if record["refused"] or record["kind"] != "answerable":
        return {"correct": False, "f1": 0.0, "markers": 0, "good": 0}
    cites = citation_scores(record["answer"], set(record["relevant_blocks"]), record["n_blocks"])
    return {"correct": answer_contains(record["answer"], record["gold"], lang),
            "f1": answer_f1(record["answer"], record["gold"], lang), **cites}


def summarize(records: Sequence[Mapping[str, Any]], lang: str = "zh") -> dict[str, Any]:
    """The answer metrics over records (see the module docstring); shares are ``None`` without data."""
    ans = [r for r in records if r["kind"] == "answerable"]
    una = [r for r in records if r["kind"] == "unanswerable"]
    scored = [_scored(r, lang) for r in ans]
    answered = [(r, s) for r, s in zip(ans, scored) if not r["refused"]]
    markers = sum(s["markers"] for _, s in answered)
    needed = [s for r, s in answered if r["relevant_blocks"]]
    wrong = [(not r["grounded"], not s["correct"]) for r, s in answered]
    wrong += [(not r["grounded"], True) for r in una if not r["refused"]]
    flagged = [w for f, w in wrong if f]
    spent = [r for r in records if not r["refused"] and r.get("latency_s") is not None]
    return {
        "n": len(records), "answerable": len(ans), "unanswerable": len(una),
        "correct": _share(s["correct"] for s in scored),
        "f1": round(sum(s["f1"] for s in scored) / len(scored), 4) if scored else None,
        "citation_precision": round(sum(s["good"] for _, s in answered) / markers, 4) if markers else None,
        "citation_recall": _share(s["good"] > 0 for s in needed),
        "false_refusal": _share(r["refused"] for r in ans),
        "hallucination": _share(not r["refused"] for r in una),
        "retrieval_hit": _share(bool(r["relevant_blocks"]) for r in ans),
        "grounded": _share(r["grounded"] for r in records if not r["refused"]),
        "flag_precision": _share(flagged), "flag_recall": _share(f for f, w in wrong if w),
        "latency_s": round(sum(r["latency_s"] for r in spent) / len(spent), 3) if spent else None,
        "tokens": round(sum(r["tokens"] for r in spent) / len(spent), 1) if spent else None,
        "cost": round(sum(r.get("cost", 0.0) for r in records), 6),
        "errors": sum(1 for r in records if r.get("error")),
    }


def min_score_curve(records: Sequence[Mapping[str, Any]], thresholds: Sequence[float] | None = None,
                    lang: str = "zh", refusal: str = "", key: str = "top_score") -> list[dict[str, Any]]:
    """False-refusal and hallucination rates (and ``correct``) for each threshold on ``key``.

    ``key``: ``top_score`` (the chain's ``min_score``) or ``coverage`` (its ``min_coverage``).
    Default thresholds: ``None`` (no threshold) first, then every distinct value of ``key`` (3 decimals).
    """
    if thresholds is None:
        thresholds = sorted({round(float(r[key]), 3) for r in records if r.get(key) is not None})
    name = "min_score" if key == "top_score" else "min_coverage"
    rows = []
    for t in [None, *thresholds]:
        m = summarize([apply_settings(r, **{name: t}, refusal=refusal) for r in records], lang)
        rows.append({name: t, "false_refusal": m["false_refusal"], "hallucination": m["hallucination"],
                     "correct": m["correct"]})
    return rows


def choose_threshold(curve: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The curve point with the lowest hallucination at a false-refusal rate no higher than without a
    threshold (the first point); among equals the lowest threshold. Ties on a tuning slice, so the
    choice is checked on a held-out slice."""
    base = curve[0]["false_refusal"] or 0.0
    ok = [row for row in curve if (row["false_refusal"] or 0.0) <= base]
    return min(ok, key=lambda row: (row["hallucination"] or 0.0))


def _badness(record: Mapping[str, Any], lang: str) -> float:
    if record["kind"] == "unanswerable":
        return 0.0 if record["refused"] else 1.0
    return 1.0 if record["refused"] else 1.0 - answer_f1(record["answer"], record["gold"], lang)


def worst_examples(records: Sequence[Mapping[str, Any]], n: int = 5, lang: str = "zh") -> list[dict[str, Any]]:
    """The ``n`` worst questions for a person to read: hallucinations, false refusals, lowest F1."""
    ranked = sorted(records, key=lambda r: -_badness(r, lang))
    keys = ("id", "kind", "question", "gold", "answer", "refused", "top_score", "relevant_blocks")
    return [{**{k: r.get(k) for k in keys}, "why": _why(r, lang)} for r in ranked[:n] if _badness(r, lang) > 0]


def _why(record: Mapping[str, Any], lang: str) -> str:
    if record["kind"] == "unanswerable":
        return "answered a question whose passage is not in the index"
    if record["refused"]:
        return "refused although the passage is " + ("in the context" if record["relevant_blocks"] else
                                                    "not retrieved")
    return f"F1 {answer_f1(record['answer'], record['gold'], lang):.2f}"
