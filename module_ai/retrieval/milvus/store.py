"""Writes and listings on a module_ai Milvus collection: upsert by chunk id, delete, ids per source.

Rows are keyed by the chunk id (a hash of source and text), so every write is an ``upsert``: running
an interrupted index job again rewrites the same keys and leaves no duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.milvus.schema import FIELDS, ID_MAX, SOURCE_MAX, TEXT_MAX, TITLE_MAX

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document

    from module_ai.retrieval.milvus._client import Connection

__all__ = ["UPSERT_BATCH", "count", "delete_ids", "delete_sources", "existing_ids", "flush", "ids_by_source",
           "quote", "rows_of", "upsert"]

UPSERT_BATCH = 512
"""Rows per upsert request (about 1 MB at 384 dimensions; far below gRPC's 64 MB limit)."""
_IN_BATCH = 1000
"""Ids per ``id in [...]`` expression."""


def quote(value: str) -> str:
    """A Milvus filter-expression string literal (double quotes; backslash and quote escaped).

    Example:
        >>> quote('C:\\\\docs\\\\a "b".md')
        '"C:\\\\\\\\docs\\\\\\\\a \\\\"b\\\\".md"'
    """
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fit(value: Any, limit: int) -> str:
    """``str(value)`` cut to at most ``limit`` UTF-8 bytes (on a character boundary)."""
    text = "" if value is None else str(value)
    raw = text.encode("utf-8", "surrogatepass")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(meta, ensure_ascii=False, default=str))


def _row(doc: Document, vector: Any) -> dict[str, Any]:
    meta = dict(doc.metadata)
    cid = doc.id or meta.get("chunk_id")
    if not cid or len(str(cid).encode()) > ID_MAX:
        raise KnowledgeBaseError(f"chunk has no id (or one over {ID_MAX} bytes); split documents with "
                                 "module_ai.retrieval.split_documents to get stable chunk ids")
    if len(doc.page_content.encode("utf-8", "surrogatepass")) > TEXT_MAX:
        raise KnowledgeBaseError(f"chunk {cid} is over {TEXT_MAX} bytes, Milvus' VARCHAR limit; use a "
                                 "smaller chunk_size", path=str(meta.get("source") or "") or None)
    position = meta.get("position", meta.get("chunk_index", 0))
    return {
        FIELDS["id"]: str(cid),
        FIELDS["text"]: doc.page_content,
        FIELDS["dense"]: vector,
        FIELDS["source"]: _fit(meta.get("source", ""), SOURCE_MAX),
        FIELDS["title"]: _fit(meta.get("title", ""), TITLE_MAX),
        FIELDS["position"]: int(position) if str(position).lstrip("-").isdigit() else 0,
        FIELDS["metadata"]: _jsonable(meta),
    }


def rows_of(docs: Sequence[Document], vectors: np.ndarray) -> list[dict[str, Any]]:
    """Milvus rows for chunk Documents and their vectors (same order)."""
    if len(docs) != len(vectors):
        raise ValueError(f"{len(docs)} documents but {len(vectors)} vectors")
    return [_row(doc, vec) for doc, vec in zip(docs, vectors)]


def upsert(conn: Connection, docs: Sequence[Document], vectors: np.ndarray, *, dimensions: int) -> int:
    """Upsert chunk rows in batches; return the number written.

    Raises:
        KnowledgeBaseError: the vectors are not ``dimensions`` wide (embedding model changed).
    """
    if len(docs) and vectors.shape[1] != dimensions:
        raise KnowledgeBaseError(f"{conn.where} stores {dimensions}-dimensional vectors, the embedding model "
                                 f"gives {vectors.shape[1]}; rebuild the collection "
                                 "(rebuild=True / --rebuild)",
                                 field="dimensions")
    written = 0
    for start in range(0, len(docs), UPSERT_BATCH):
        rows = rows_of(docs[start : start + UPSERT_BATCH], vectors[start : start + UPSERT_BATCH])
        conn.call("upsert", "upsert", conn.collection, rows)
        written += len(rows)
    return written


def _batches(items: Sequence[str], size: int = _IN_BATCH) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delete_ids(conn: Connection, ids: Iterable[str]) -> int:
    """Delete rows by chunk id; return how many ids were asked for."""
    ids = sorted(set(ids))
    for part in _batches(ids):
        conn.call("delete", "delete", conn.collection, ids=list(part))
    return len(ids)


def delete_sources(conn: Connection, sources: Iterable[str]) -> int:
    """Delete every row whose ``source`` is one of ``sources``; return the number of sources."""
    sources = sorted(set(sources))
    for part in _batches(sources, 200):
        expr = f'{FIELDS["source"]} in [{", ".join(quote(s) for s in part)}]'
        conn.call("delete by source", "delete", conn.collection, filter=expr)
    return len(sources)


def _iterate(conn: Connection, expr: str, fields: list[str]) -> Iterable[dict[str, Any]]:
    """All rows matching ``expr`` (query iterator, 1000 rows per page)."""
    with conn.errors("query"):
        it = conn.client.query_iterator(conn.collection, batch_size=1000, filter=expr, output_fields=fields)
        try:
            while True:
                page = it.next()
                if not page:
                    break
                yield from page
        finally:
            it.close()


def ids_by_source(conn: Connection, sources: Sequence[str] | None = None) -> dict[str, set[str]]:
    """``{source: {chunk ids}}`` for the given sources, or for every source when ``None``."""
    out: dict[str, set[str]] = {}
    if sources is not None and not sources:
        return out
    exprs = [f'{FIELDS["id"]} != ""'] if sources is None else [
        f'{FIELDS["source"]} in [{", ".join(quote(s) for s in part)}]'
        for part in _batches(list(sources), 200)
    ]
    for expr in exprs:
        for row in _iterate(conn, expr, [FIELDS["id"], FIELDS["source"]]):
            out.setdefault(row[FIELDS["source"]], set()).add(row[FIELDS["id"]])
    return out


def existing_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """The subset of ``ids`` already stored."""
    found: set[str] = set()
    for part in _batches(list(dict.fromkeys(ids))):
        expr = f'{FIELDS["id"]} in [{", ".join(quote(i) for i in part)}]'
        rows = conn.call("query", "query", conn.collection, filter=expr, output_fields=[FIELDS["id"]])
        found.update(r[FIELDS["id"]] for r in rows)
    return found


def flush(conn: Connection) -> None:
    """Seal written rows into indexed segments (once per job: each flush makes a segment)."""
    conn.call("flush", "flush", conn.collection)


def count(conn: Connection) -> int:
    """Number of rows (exact: ``count(*)``)."""
    rows = conn.call("count", "query", conn.collection, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0
