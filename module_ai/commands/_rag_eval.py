"""``module-ai rag eval``: evaluation glue and the printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["results_table", "run_evaluation"]

_METRICS = ("ndcg@10", "recall@10", "mrr@10")


def run_evaluation(args: Any) -> dict[str, Any]:
    """Evaluate the data set named by ``args`` with the embedded or the Milvus backend."""
    data = Path(args.data)
    missing = [f for f in ("corpus.jsonl", "queries.jsonl", "qrels.tsv") if not (data / f).is_file()]
    if missing:
        raise ConfigError(f"'{data}' is not a BEIR-layout folder: missing {', '.join(missing)}", field="data")
    reg = load_registry(args.config)
    cfg = reg.config(args.embedding)
    embeddings = reg.embeddings(args.embedding)
    reranker = reg.reranker(args.rerank) if args.rerank else None
    if args.backend == "milvus":
        from module_ai.commands._milvus import evaluate_milvus

        result = evaluate_milvus(data, embeddings, embedding_model_name=args.embedding,
                                 max_queries=args.max_queries, show_progress=not args.json)
        if args.save_best:
            _save_best(args, reg, result)
        return result
    from module_ai.retrieval import evaluate_retrieval

    result = evaluate_retrieval(data, embeddings, embedding_model_name=args.embedding, reranker=reranker,
                                max_queries=args.max_queries, folds=args.folds,
                                batch_size=cfg.max_batch or 64, max_concurrency=cfg.max_concurrency or 1,
                                cache_dir=Path.home() / ".cache" / "module_ai" / "eval",
                                show_progress=not args.json)
    if args.save_best:
        _save_best(args, reg, result)
    return result


def _save_best(args: Any, reg: Any, result: dict[str, Any]) -> None:
    params = dict(result["best"]["params"])
    params.pop("reranker", None)
    params.pop("rerank_top", None)
    embeddings = reg.embeddings(args.embedding)
    if args.backend == "milvus":
        from module_ai.commands._milvus import save_best_milvus

        save_best_milvus(args.save_best, args.collection, embeddings, params)
        return
    from module_ai.retrieval import KnowledgeBase

    KnowledgeBase.open(args.save_best, embeddings, show_progress=False).set_defaults(**params)


def results_table(result: dict[str, Any]) -> str:
    """The results as an aligned text table plus the best setting."""
    rows = [f"dataset: {result['dataset']}", f"{'method':<15}" + "".join(f"{m:>11}" for m in _METRICS)]
    for method, scores in result["results"].items():
        rows.append(f"{method:<15}" + "".join(f"{scores[m]:>11.4f}" for m in _METRICS))
    best = result.get("best")
    if best:
        rows.append(f"best: {best['method']} {best.get('params', {})}")
    return "\n".join(rows)
