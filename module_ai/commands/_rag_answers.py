"""``module-ai rag eval DATA --answers``: answer-level evaluation glue and the printed report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["answers_table", "run_answer_eval"]

_ROWS = (("correct", "answerable questions answered with a gold answer"),
         ("f1", "mean best F1 against the gold answers"),
         ("citation_precision", "[n] markers naming the relevant passage's block"),
         ("citation_recall", "answers citing the relevant passage when it was in context"),
         ("false_refusal", "answerable questions refused"),
         ("hallucination", "unanswerable questions answered instead of refused"),
         ("retrieval_hit", "answerable questions with the relevant passage in context"),
         ("grounded", "answers passing the chain's groundedness check"),
         ("flag_precision", "check failures that were wrong answers"),
         ("flag_recall", "wrong answers the check failed"),
         ("latency_s", "seconds per answered question"),
         ("tokens", "tokens per answered question"),
         ("cost", "total cost"))


def run_answer_eval(args: Any) -> int:
    """Run :func:`module_ai.chains.answer_eval.evaluate_answers` as the arguments say; print JSON or tables."""
    from module_ai.chains.answer_eval import evaluate_answers

    data = Path(args.data)
    if not (data / "answers.jsonl").is_file():
        raise ConfigError(f"'{data}' has no answers.jsonl (gold answers, one {{\"_id\", \"answers\"}} per line); "
                          "answer evaluation needs it", field="data")
    if args.sample < 1:
        raise ConfigError(f"--sample must be at least 1, not {args.sample}", field="--sample")
    reg = load_registry(args.config)
    chat = args.chat or os.environ.get("MODULE_AI_CHAT")
    if not chat or chat == "none":
        raise ConfigError("answer evaluation needs a chat model: --chat NAME or MODULE_AI_CHAT=NAME", field="--chat")
    embeddings = reg.embeddings(args.embedding)
    result = evaluate_answers(
        data, reg.chat(chat), embeddings, sample=args.sample, seed=args.seed, split=args.split, k=args.k,
        reranker=reg.reranker(args.rerank) if args.rerank else None, min_score=args.min_score,
        min_coverage=args.min_coverage, check_embeddings=embeddings if args.check_embedding else None,
        embedding_model_name=args.embedding,
        cache_dir=Path.home() / ".cache" / "module_ai" / "eval", worst=args.worst, show_progress=not args.json)
    result["settings"].update(chat=chat, embedding=args.embedding, rerank=args.rerank)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(answers_table(result))
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def answers_table(result: dict[str, Any]) -> str:
    """The metrics, checks, policies, a thinned min_score curve and the worst examples as text."""
    a, s = result["answers"], result["settings"]
    head = (f"dataset: {result['dataset']}  answerable {a['answerable']} + unanswerable {a['unanswerable']}  "
            f"(split {s['split']}, seed {s['seed']}, k {s['k']}, min_score {s['min_score']}, "
            f"min_coverage {s['min_coverage']})")
    lines = [head]
    lines += [f"{name:<20}{_fmt(a[name]):>10}  {meaning}" for name, meaning in _ROWS]
    for check, m in result.get("checks", {}).items():
        lines.append(f"check {check:<14} grounded {_fmt(m['grounded'])}  flags wrong answers: precision "
                     f"{_fmt(m['flag_precision'])} recall {_fmt(m['flag_recall'])}")
    for policy, m in result.get("policies", {}).items():
        lines.append(f"policy {policy:<28} correct {_fmt(m['correct'])} false_refusal {_fmt(m['false_refusal'])}"
                     f" hallucination {_fmt(m['hallucination'])}")
    for name in ("min_score", "min_coverage"):
        curve = result.get(f"{name}_curve", [])
        step = max(1, len(curve) // 8)
        lines.append(f"{name:<13} false_refusal  hallucination  (refusal before generation; curve thinned)")
        lines += [f"{_fmt(r[name]):<13} {_fmt(r['false_refusal']):>13}  {_fmt(r['hallucination']):>13}"
                  for r in curve[::step]]
    lines.append("worst examples:")
    for w in result.get("worst", []):
        answer = " ".join(str(w["answer"]).split())[:120]
        lines.append(f"- [{w['kind']}] {w['question']}\n    gold: {' | '.join(w['gold'])}\n    answer: {answer}"
                     f"\n    ({w['why']}; top_score {_fmt(w['top_score'])})")
    return "\n".join(lines)
