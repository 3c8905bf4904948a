"""Apply a change (chunks per source to put in, sources to remove) to a Milvus collection.

The plan compares chunk ids: a source's new chunks whose ids are already stored are skipped (same
source + same text = same id), the others are embedded (through the embedding cache) and upserted in
windows of :data:`WRITE_WINDOW`, then the source's stale ids are deleted. Because ids are content
hashes and writes are upserts, an interrupted job re-run resumes: what was written is skipped, what
was embedded comes from the cache, and nothing is duplicated. A job that changed anything ends with
one ``flush`` (sealed segments are indexed: on Milvus Lite a BM25 search over 300 unflushed chunks
took 130 ms, 2 ms after the flush).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from module_ai.retrieval.milvus import store

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document

    from module_ai.retrieval import UpdateReport
    from module_ai.retrieval.milvus._client import Connection

__all__ = ["WRITE_WINDOW", "Plan", "apply_plan", "plan_change"]

WRITE_WINDOW = 1024
"""Chunks embedded and upserted per step (bounds memory and the work an interruption loses)."""


@dataclass
class Plan:
    """What a change will do, computed from the stored chunk ids before anything is written."""

    fresh: list[Document] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    gone: dict[str, int] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def plan_change(conn: Connection | None, upserts: Mapping[str, Sequence[Document]], deletes: set[str], *,
                replace_all: bool = False, unchanged: Sequence[str] = ()) -> Plan:
    """Compare the new chunks per source with the stored ids (``conn=None``: empty collection).

    Args:
        conn: the connection, or ``None`` when the collection does not exist yet.
        upserts: source -> its complete new list of chunk Documents.
        deletes: sources to remove.
        replace_all: also remove every stored source not in ``upserts`` (a build).
        unchanged: sources already known to be unchanged (reported as such).
    """
    scope = None if replace_all else sorted(set(upserts) | set(deletes))
    existing = store.ids_by_source(conn, scope) if conn is not None else {}
    plan = Plan(unchanged=list(unchanged))
    for src, docs in upserts.items():
        old, new = existing.get(src, set()), {d.id for d in docs}
        bucket = plan.unchanged if old == new else plan.updated if old else plan.added
        bucket.append(src)
        plan.fresh.extend(d for d in docs if d.id not in old)
        plan.stale |= old - new
    gone = set(deletes) | (set(existing) - set(upserts) if replace_all else set())
    plan.gone = {s: len(existing[s]) for s in sorted(gone) if s in existing}
    return plan


def apply_plan(ensure: Callable[[int], tuple[Connection, int]], plan: Plan,
               embed: Callable[[list[str]], tuple[np.ndarray, int]], *,
               dimensions: Callable[[], int]) -> UpdateReport:
    """Embed and upsert the fresh chunks window by window, then delete stale ids and gone sources.

    Args:
        ensure: ``dims -> (connection, the collection's dims)``; creates the collection on first use.
        plan: from :func:`plan_change`.
        embed: texts -> (float32 vectors, texts sent to the model).
        dimensions: vector size to create an empty collection with (called only if nothing is written).
    """
    from module_ai.retrieval import UpdateReport

    embedded = 0
    conn = None
    for start in range(0, len(plan.fresh), WRITE_WINDOW):
        window = plan.fresh[start : start + WRITE_WINDOW]
        vectors, n = embed([d.page_content for d in window])
        embedded += n
        conn, dims = ensure(int(vectors.shape[1]))
        store.upsert(conn, window, vectors, dimensions=dims)
    if conn is None:
        conn, _ = ensure(dimensions())
    store.delete_ids(conn, plan.stale)
    store.delete_sources(conn, list(plan.gone))
    if plan.fresh or plan.stale or plan.gone:
        store.flush(conn)
    return UpdateReport(
        added=sorted(plan.added), updated=sorted(plan.updated), deleted=sorted(plan.gone),
        unchanged=sorted(plan.unchanged), chunks_added=len(plan.fresh),
        chunks_removed=len(plan.stale) + sum(plan.gone.values()), embedded=embedded,
        chunks=store.count(conn), generation=None,
    )

