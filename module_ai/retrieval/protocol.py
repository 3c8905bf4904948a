"""What every knowledge-base store offers the shared retrieval layer (embedded folder index, Milvus).

:class:`HybridRetriever` talks to a store only through :class:`SearchableStore`; a new backend is a
class with these members, nothing in ``retrieval/`` needs to know its internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.vectorstores import VectorStore

    from module_ai.retrieval.settings import RetrievalSettings

__all__ = ["SearchableStore", "UpdateReport"]


@runtime_checkable
class SearchableStore(Protocol):
    """A knowledge base that :class:`~module_ai.retrieval.HybridRetriever` can search."""

    settings: RetrievalSettings
    """The stored default retrieval settings."""

    def retrieve(self, query: str, settings: RetrievalSettings, *, limit: int | None = None,
                 vector_store: VectorStore | None = None, **filters: Any) -> list[Document]:
        """Fused candidates for ``query``, best first, at most ``limit`` (default ``settings.k``).

        Each Document carries ``chunk_id``, ``score``, ``bm25_score``, ``dense_score`` and ``rank``
        in its metadata; ``filters`` are store-specific (e.g. Milvus ``expr``).
        """
        ...


@dataclass(frozen=True)
class UpdateReport:
    """What one build/add/sync/delete did.

    Attributes:
        added: sources new to the index.
        updated: sources whose content changed (re-chunked; unchanged chunks kept their vectors).
        deleted: sources removed.
        unchanged: sources given again with identical content (nothing done).
        chunks_added: chunks that were not in the index before.
        chunks_removed: chunks dropped.
        embedded: texts actually sent to the embedding model (cache misses).
        chunks: chunks in the index afterwards.
        generation: the committed generation (unchanged if nothing changed).
        skipped: files and links not indexed, with the reason (unreadable or malformed files,
            symbolic links out of the folder, loops, non-regular files).
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    chunks: int = 0
    generation: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
