"""Helpers of :class:`~module_ai.retrieval.milvus.MilvusKnowledgeBase`: local settings file, chunking, embedding,
layout checks and the langchain-milvus view of a collection."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import ConfigError, KnowledgeBaseError
from module_ai.retrieval.milvus.config import MilvusConfig
from module_ai.retrieval.milvus.schema import FIELDS

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings

    from module_ai.retrieval.milvus._client import Connection

__all__ = ["LOCAL_FILE", "all_documents", "check_layout", "chunk_sources", "embed_with_cache", "load_local",
           "open_cache", "prepare_collection", "resolve_config", "stats_of", "write_local"]

LOCAL_FILE = "milvus.json"
"""Connection settings of a Milvus knowledge base, in its local folder (token only as ``${VAR}``)."""
_FORMAT = "module_ai.milvus_kb"


def resolve_config(config: MilvusConfig | Mapping[str, Any] | None, metric: str | None) -> MilvusConfig:
    """A :class:`MilvusConfig` from an object, a dict or ``None`` (Lite defaults); ``metric`` overrides."""
    from pydantic import ValidationError

    try:
        cfg = config if isinstance(config, MilvusConfig) else MilvusConfig(**dict(config or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or None
        raise ConfigError(f"invalid Milvus index config: {first['msg']}", field=loc) from exc
    return cfg.model_copy(update={"metric": metric.upper()}) if metric else cfg


def write_local(kb_dir: str | Path, config: MilvusConfig) -> None:
    """Write ``kb_dir/milvus.json`` atomically (a literal token is not saved)."""
    path = Path(kb_dir) / LOCAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{LOCAL_FILE}.tmp")
    data = {"format": _FORMAT, "format_version": 1, "config": config.savable_dict()}
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def load_local(kb_dir: str | Path) -> dict[str, Any]:
    """The config dict saved in ``kb_dir/milvus.json``.

    Raises:
        KnowledgeBaseError: no Milvus knowledge base in ``kb_dir``.
    """
    path = Path(kb_dir) / LOCAL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KnowledgeBaseError(f"no Milvus knowledge base here ({LOCAL_FILE} missing); build one with "
                                 "`module-ai rag index ... --backend milvus` or pass config=",
                                 path=str(kb_dir)) from exc
    except (OSError, ValueError) as exc:
        raise KnowledgeBaseError(f"{LOCAL_FILE} is unreadable ({exc})", path=str(path)) from exc
    if data.get("format") != _FORMAT:
        raise KnowledgeBaseError(f"{LOCAL_FILE} is not a module_ai Milvus settings file", path=str(path))
    return {k: v for k, v in dict(data.get("config") or {}).items() if v is not None}


def check_layout(manifest: Mapping[str, Any], config: MilvusConfig, where: str) -> None:
    """Raise when the config asks for a metric, index type or analyzer the collection was not built with."""
    for key in ("metric", "index_type", "language", "stemming"):
        built, wanted = manifest.get(key), getattr(config, key)
        if built and built != wanted:
            raise KnowledgeBaseError(f"{where} was built with {key} {built!r}, the config asks for "
                                     f"{wanted!r}; rebuild (rebuild=True / --rebuild) or set {key}: {built}",
                                     field=key)


def prepare_collection(conn: Connection, cfg: MilvusConfig, model: str, dimensions: int | None,
                       chunking: dict[str, Any], *, rebuild: bool) -> tuple[dict[str, Any], bool]:
    """For a build: drop (``rebuild``) or check an existing collection; return ``(manifest, exists)``.

    A missing collection gets a pending manifest; it is created once the first vectors give its size.
    """
    from module_ai.retrieval.milvus import schema
    from module_ai.retrieval.settings import DEFAULT_SETTINGS

    exists = schema.describe(conn) is not None
    if exists and rebuild:
        conn.call("drop collection", "drop_collection", conn.collection)
        exists = False
    if not exists:
        settings = {"chunking": chunking, "retrieval": DEFAULT_SETTINGS.to_dict()}
        manifest = schema.new_manifest(cfg, model, dimensions or 0, settings)
        return {**manifest, "requested_dimensions": dimensions}, False
    manifest = schema.read_manifest(conn)
    schema.check_manifest(manifest, embedding_model=model, dimensions=dimensions, where=conn.where)
    check_layout(manifest, cfg, conn.where)
    schema.load_collection(conn, cfg)
    manifest = {**manifest, "settings": {**manifest.get("settings", {}), "chunking": chunking}}
    schema.write_manifest(conn, manifest)
    return manifest, True


def stats_of(kb: Any) -> dict[str, Any]:
    """The ``stats()`` dict of a :class:`~module_ai.retrieval.milvus.MilvusKnowledgeBase`."""
    from module_ai.retrieval.milvus import store
    from module_ai.retrieval.milvus._client import display_uri

    by_source = store.ids_by_source(kb._conn) if kb._exists else {}
    cfg = kb.config
    return {
        "backend": "milvus", "uri": display_uri(kb._conn.uri), "collection": cfg.collection,
        "lite": cfg.is_lite, "kb_dir": str(kb.kb_dir), "chunks": store.count(kb._conn) if kb._exists else 0,
        "sources": len(by_source), "embedding_model": kb.manifest.get("embedding_model"),
        "dimensions": kb.manifest.get("dimensions"), "metric": cfg.metric, "index_type": cfg.index_type,
        "language": cfg.language, "stemming": cfg.stemming,
        "chunking": kb._chunking, "retrieval": kb.settings.to_dict(),
    }


def chunk_sources(items: Any, chunking: Mapping[str, Any]) -> dict[str, list[Document]]:
    """Load and split files / folders / Documents into ``{source: [chunk Documents]}``."""
    from module_ai.retrieval.loaders import iter_files, load_file
    from module_ai.retrieval.splitter import split_documents

    items = [items] if isinstance(items, (str, Path)) else list(items)
    docs = [d for d in items if not isinstance(d, (str, Path))]
    for path in (Path(p) for p in items if isinstance(p, (str, Path))):
        if not path.exists():
            raise KnowledgeBaseError("no such file or folder", path=str(path))
        for f in iter_files(path) if path.is_dir() else [path.resolve()]:
            docs.extend(load_file(f))
    size, overlap = int(chunking.get("chunk_size", 500)), int(chunking.get("chunk_overlap", 80))
    out: dict[str, list[Document]] = {}
    for chunk in split_documents(docs, size, overlap, unit=chunking.get("unit", "chars")):
        out.setdefault(chunk.metadata["source"], []).append(chunk)
    return out


def open_cache(folder: str | Path) -> Any:
    """The embedded index's embedding cache in ``folder`` (same layout and keys, so shared)."""
    from module_ai.retrieval.embedding_cache import CACHE_DIR, EmbeddingCache

    return EmbeddingCache(Path(folder) / CACHE_DIR)


def embed_with_cache(texts: list[str], embeddings: Embeddings, manifest: Mapping[str, Any], cache: Any,
                     batch_size: int, max_concurrency: int, show_progress: bool) -> tuple[np.ndarray, int]:
    """Embed through the embedded index's cache; return ``(vectors, texts sent to the model)``."""
    from module_ai.retrieval.embedding import embed_texts

    result = embed_texts(texts, embeddings, model=manifest["embedding_model"],
                         dimensions=manifest.get("requested_dimensions"), cache=cache, batch_size=batch_size,
                         max_concurrency=max_concurrency, show_progress=show_progress)
    return result if isinstance(result, tuple) else (result, len(texts))


def all_documents(conn: Connection) -> list[Document]:
    """Every stored chunk as a Document (query iterator; for export or another vector store)."""
    from langchain_core.documents import Document

    from module_ai.retrieval.milvus.store import _iterate

    fields = [FIELDS[n] for n in ("id", "text", "source", "title", "metadata")]
    out = []
    for row in _iterate(conn, f'{FIELDS["id"]} != ""', fields):
        meta = dict(row.get(FIELDS["metadata"]) or {})
        meta.setdefault("source", row.get(FIELDS["source"], ""))
        out.append(Document(page_content=row[FIELDS["text"]], metadata=meta, id=row[FIELDS["id"]]))
    return out


def langchain_vectorstore(kb: Any) -> Any:
    """A ``langchain_milvus.Milvus`` bound to the knowledge base's collection (dense + BM25 fields)."""
    from module_ai.errors import require
    from module_ai.retrieval.milvus.schema import bm25_function

    lcm = require("langchain_milvus", "milvus")
    cfg: MilvusConfig = kb.config
    args: dict[str, Any] = {"uri": kb._conn.uri}
    if cfg.token is not None:
        args["token"] = cfg.resolved_token()
    if cfg.db_name:
        args["db_name"] = cfg.db_name
    with kb._conn.errors("open as langchain-milvus vector store"):
        return lcm.Milvus(
            embedding_function=kb.embeddings, collection_name=cfg.collection, connection_args=args,
            builtin_function=bm25_function(cfg.language, cfg.stemming),
            vector_field=[FIELDS["dense"], FIELDS["sparse"]],
            primary_field=FIELDS["id"], text_field=FIELDS["text"], auto_id=False,
            consistency_level=cfg.consistency_level,
            search_params=[{"metric_type": cfg.metric, "params": cfg.query_params(64)},
                           {"metric_type": "BM25", "params": {}}],
        )
