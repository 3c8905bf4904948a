"""Glue for ``module-ai rag index|ask|eval --backend milvus``.

``--kb`` names where the collection lives:

* a folder (default ``kb``): Milvus Lite file ``<folder>/milvus.db``; the folder keeps ``milvus.json``
  and the embedding cache;
* a ``.db`` file: Milvus Lite at that path; its folder keeps the rest;
* ``http(s)://host:port``: a Milvus cluster; the token is read from ``$MILVUS_TOKEN`` (kept as the
  reference ``${MILVUS_TOKEN}``), and the local state goes to
  ``~/.cache/module_ai/retrieval/milvus/<host>-<collection>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from module_ai.commands import DEFAULT_EMBEDDING

__all__ = ["eval_cache_dir", "evaluate_milvus", "open_milvus_kb", "save_best_milvus",
           "target_of"]

TOKEN_ENV = "MILVUS_TOKEN"


def eval_cache_dir() -> Path:
    """Embedding cache of ``rag eval``: the embedded backend's, so switching backends re-embeds nothing."""
    return Path.home() / ".cache" / "module_ai" / "eval"


def evaluate_milvus(data: str | Path, embeddings: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`module_ai.retrieval.milvus.evaluate_milvus` with the CLI's shared embedding cache."""
    from module_ai.retrieval.milvus.evaluate import evaluate_milvus as run

    kwargs.setdefault("cache_dir", eval_cache_dir())
    return run(data, embeddings, **kwargs)


def target_of(kb: str, collection: str) -> tuple[Path, dict[str, Any]]:
    """``(local folder, MilvusConfig fields)`` for a ``--kb`` value (see the module docstring).

    Example:
        >>> target_of("kb", "docs")[1]["uri"]
        'milvus.db'
    """
    if re.match(r"^(https?|tcp|grpc)://", kb, re.IGNORECASE):
        host = re.sub(r"[^A-Za-z0-9_.-]+", "_", re.sub(r"^\w+://([^@/]*@)?", "", kb)).strip("_")
        fields: dict[str, Any] = {"uri": kb, "collection": collection}
        if os.environ.get(TOKEN_ENV):
            fields["token"] = "${" + TOKEN_ENV + "}"
        return Path.home() / ".cache" / "module_ai" / "milvus" / f"{host}-{collection}", fields
    if kb.endswith(".db"):
        path = Path(kb).resolve()
        return path.parent, {"uri": str(path), "collection": collection}
    return Path(kb), {"uri": "milvus.db", "collection": collection}


def _embedding_name(kb_dir: Path, fields: dict[str, Any], embedding: str | None) -> str | None:
    """``--embedding``, else the collection's model; ``None`` when the collection does not exist."""
    from module_ai.retrieval.milvus import schema
    from module_ai.retrieval.milvus._client import connect
    from module_ai.retrieval.milvus.config import MilvusConfig

    cfg = MilvusConfig(**fields)
    if cfg.is_lite and not Path(cfg.resolved_uri(kb_dir)).exists():
        return None
    conn = connect(cfg, kb_dir)
    try:
        if schema.describe(conn) is None:
            return None
        return embedding or schema.read_manifest(conn).get("embedding_model")
    finally:
        conn.close()


def open_milvus_kb(args: Any, reg: Any, *, create_from: list[str] | None = None,
                   embedding: str | None = None) -> Any:
    """Open (or, with ``create_from``, build or sync) the Milvus knowledge base named by ``args``.

    Raises:
        ConfigError: ``ask`` on a collection that does not exist.
        KnowledgeBaseError / BackendError: from the knowledge base (schema change, unreachable URI).
    """
    from module_ai.errors import ConfigError
    from module_ai.retrieval.milvus.kb import MilvusKnowledgeBase

    kb_dir, fields = target_of(str(args.kb), getattr(args, "collection", None) or "module_ai_kb")
    found = _embedding_name(kb_dir, fields, embedding)
    if create_from is None and found is None:
        raise ConfigError(f"no Milvus collection '{fields['collection']}' at {args.kb}; build one with: "
                          f"module-ai rag index DOCS --kb {args.kb} --backend milvus", field="--kb")
    name = embedding or found or DEFAULT_EMBEDDING
    cfg = reg.config(name)
    options = {"batch_size": cfg.max_batch or 32, "max_concurrency": cfg.max_concurrency or 2,
               "show_progress": not getattr(args, "quiet", False)}
    if create_from is not None and (getattr(args, "rebuild", False) or found is None):
        metric = getattr(args, "metric", None)
        return MilvusKnowledgeBase.build(
            create_from if len(create_from) > 1 else create_from[0], kb_dir, reg.embeddings(name),
            config={**fields, **({"metric": metric} if metric else {})}, embedding_model_name=name,
            dimensions=cfg.dimensions, chunk_size=getattr(args, "chunk_size", 500),
            chunk_overlap=getattr(args, "chunk_overlap", 80), rebuild=getattr(args, "rebuild", False),
            **options)
    kb = MilvusKnowledgeBase.open(kb_dir, reg.embeddings(name), config=fields, embedding_model_name=name,
                                  dimensions=cfg.dimensions, **options)
    for item in create_from or []:
        kb.sync(item) if Path(item).is_dir() else kb.add_paths([item])
    return kb


def save_best_milvus(kb: str, collection: str, embeddings: Any, params: dict[str, Any]) -> Any:
    """``rag eval --save-best KB --backend milvus``: store tuned settings in the collection's manifest.

    Args:
        kb: the ``--kb`` value (folder, ``.db`` file or URI).
        collection: the collection name.
        embeddings: the embedding model (not called).
        params: retrieval settings, e.g. ``result["best"]["params"]`` minus reranker keys.

    Returns:
        The new :class:`~module_ai.retrieval.RetrievalSettings`.
    """
    from module_ai.retrieval.milvus.kb import MilvusKnowledgeBase

    kb_dir, fields = target_of(kb, collection)
    store = MilvusKnowledgeBase.open(kb_dir, embeddings, config=fields, show_progress=False)
    try:
        return store.set_defaults(**params)
    finally:
        store.close()
