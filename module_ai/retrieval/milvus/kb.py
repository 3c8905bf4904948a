"""``MilvusKnowledgeBase``: the knowledge-base API of the embedded index, stored in Milvus.

Same loaders, splitter, chunk ids, embedding cache, retrieval settings and retriever
(:class:`~module_ai.retrieval.HybridRetriever`) as :class:`~module_ai.retrieval.KnowledgeBase`; the
chunks, vectors and the BM25 index live in a Milvus collection (Milvus Lite file or cluster). The local
folder keeps ``milvus.json`` (connection settings, token only as a ``${VAR}`` reference) and the
embedding cache (same format as the embedded index's). The collection carries its own manifest, so another
machine can open it with just a :class:`MilvusConfig`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.milvus import schema, store
from module_ai.retrieval.milvus._client import connect, display_uri
from module_ai.retrieval.milvus._kbsupport import (
    chunk_sources,
    embed_with_cache,
    load_local,
    open_cache,
    prepare_collection,
    resolve_config,
    write_local,
)
from module_ai.retrieval.milvus.config import MilvusConfig
from module_ai.retrieval.retriever import RetrieverMixin

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from typing_extensions import Self

    from module_ai.retrieval import RetrievalSettings, UpdateReport
    from module_ai.retrieval.milvus._client import Connection

__all__ = ["MilvusKnowledgeBase"]


class MilvusKnowledgeBase(RetrieverMixin):
    """A hybrid (BM25 + dense) knowledge base in Milvus, with the API of the embedded index.

    Example:
        >>> cfg = MilvusConfig(uri="milvus.db")          # Lite file inside kb/  # doctest: +SKIP
        >>> kb = MilvusKnowledgeBase.build("docs/", "kb/", emb, config=cfg)    # doctest: +SKIP
        >>> kb.as_retriever(k=5, mode="hybrid").invoke("如何配置代理？")        # doctest: +SKIP
        >>> kb = MilvusKnowledgeBase.open("kb/", emb); kb.sync("docs/")        # doctest: +SKIP
    """

    def __init__(self, kb_dir: str | Path, embeddings: Embeddings, config: MilvusConfig, conn: Connection,
                 manifest: dict[str, Any], *, exists: bool, batch_size: int = 64, max_concurrency: int = 1,
                 show_progress: bool = True) -> None:
        """Use :meth:`build` or :meth:`open` instead."""
        self.kb_dir = Path(kb_dir)
        self.embeddings = embeddings
        self.config = config
        self.manifest = manifest
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.show_progress = show_progress
        self.last_report: UpdateReport | None = None
        self._conn = conn
        self._exists = exists
        self._cache: Any = None

    # ----------------------------------------------------------------- create / open
    @classmethod
    def build(cls, path_or_docs: str | Path | Sequence[str | Path] | Sequence[Document], kb_dir: str | Path,
              embeddings: Embeddings, *, config: MilvusConfig | dict[str, Any] | None = None,
              embedding_model_name: str | None = None, dimensions: int | None = None,
              metric: str | None = None, chunk_size: int = 500, chunk_overlap: int = 80,
              chunk_unit: str = "chars", rebuild: bool = False, batch_size: int = 64,
              max_concurrency: int = 1, show_progress: bool = True) -> MilvusKnowledgeBase:
        """Index files, folders or Documents into the collection (its content becomes exactly these).

        An existing compatible collection is updated in place (unchanged chunks are neither embedded nor
        written again); re-running an interrupted build resumes it without duplicates.

        Args:
            path_or_docs: a file or folder, a list of them, or LangChain Documents (split here).
            kb_dir: local folder for ``milvus.json``, the embedding cache and (by default) the Lite file.
            embeddings: any LangChain Embeddings (e.g. ``load_registry().embeddings("bge-m3")``).
            config: a :class:`MilvusConfig` or its dict (default: Milvus Lite at ``kb_dir/milvus.db``).
            embedding_model_name: recorded in the manifest and the cache key (default: the model's name).
            dimensions: expected vector size (``None``: what the model returns).
            metric: ``"cosine"``, ``"ip"`` or ``"l2"`` (overrides ``config.metric``).
            chunk_size, chunk_overlap, chunk_unit: splitter settings.
            rebuild: drop and recreate an existing collection (needed after changing the embedding
                model, dimensions, metric, index type or language).
            batch_size, max_concurrency: embedding batching (the model's ``max_batch`` / ``max_concurrency``).
            show_progress: show a progress bar while embedding.

        Raises:
            KnowledgeBaseError: the collection exists with another model / dimensions / layout and
                ``rebuild`` is false (the message gives the fix).
            BackendError: Milvus cannot be reached (names the URI, never the token).
        """
        from module_ai.retrieval.embedding import model_name_of

        cfg = resolve_config(config, metric)
        conn = connect(cfg, kb_dir)
        model = embedding_model_name or model_name_of(embeddings)
        chunking = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "unit": chunk_unit}
        manifest, exists = prepare_collection(conn, cfg, model, dimensions, chunking, rebuild=rebuild)
        write_local(kb_dir, cfg)
        kb = cls(kb_dir, embeddings, cfg, conn, manifest, exists=exists, batch_size=batch_size,
                 max_concurrency=max_concurrency, show_progress=show_progress)
        kb.last_report = kb._apply(chunk_sources(path_or_docs, kb._chunking), set(), replace_all=True)
        return kb

    @classmethod
    def open(cls, kb_dir: str | Path, embeddings: Embeddings, *,
             config: MilvusConfig | dict[str, Any] | None = None, embedding_model_name: str | None = None,
             dimensions: int | None = None, batch_size: int = 64, max_concurrency: int = 1,
             show_progress: bool = True) -> MilvusKnowledgeBase:
        """Open an existing collection (settings from ``kb_dir/milvus.json`` unless ``config`` is given).

        Raises:
            KnowledgeBaseError: no such collection, or ``embedding_model_name`` / ``dimensions`` differ
                from what it was built with (the message says how to fix it).
            BackendError: Milvus cannot be reached.
        """
        cfg = resolve_config(config if config is not None else load_local(kb_dir), None)
        conn = connect(cfg, kb_dir, create=False)
        manifest = schema.read_manifest(conn)
        schema.check_manifest(manifest, embedding_model=embedding_model_name, dimensions=dimensions,
                              where=conn.where)
        fixed = ("metric", "index_type", "language", "stemming")  # chosen at build time
        cfg = cfg.model_copy(update={k: manifest[k] for k in fixed if k in manifest})
        schema.load_collection(conn, cfg)
        return cls(kb_dir, embeddings, cfg, conn, manifest, exists=True, batch_size=batch_size,
                   max_concurrency=max_concurrency, show_progress=show_progress)

    # ----------------------------------------------------------------- changes
    @property
    def _chunking(self) -> dict[str, Any]:
        return dict(self.manifest.get("settings", {}).get("chunking") or {})

    def _ensure(self, dims: int) -> tuple[Connection, int]:
        if not self._exists:
            self.manifest = {**self.manifest, "dimensions": int(dims)}
            schema.create_collection(self._conn, self.config, self.manifest)
            self._exists = True
        return self._conn, int(self.manifest["dimensions"])

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        if self._cache is None:
            self.kb_dir.mkdir(parents=True, exist_ok=True)
            self._cache = open_cache(self.kb_dir)
        return embed_with_cache(texts, self.embeddings, self.manifest, self._cache, self.batch_size,
                                self.max_concurrency, self.show_progress)

    def _probe_dims(self) -> int:
        dims = self.manifest.get("requested_dimensions") or self.manifest.get("dimensions")
        return int(dims) if dims else len(self.embeddings.embed_query("维度 dimensions"))

    def _apply(self, upserts: dict[str, list[Document]], deletes: set[str], *, replace_all: bool = False,
               unchanged: Sequence[str] = ()) -> UpdateReport:
        from module_ai.retrieval.milvus._update import apply_plan, plan_change

        plan = plan_change(self._conn if self._exists else None, upserts, deletes, replace_all=replace_all,
                           unchanged=unchanged)
        self.last_report = apply_plan(self._ensure, plan, self._embed, dimensions=self._probe_dims)
        return self.last_report

    def add_paths(self, paths: str | Path | Iterable[str | Path]) -> UpdateReport:
        """Add or update files and folders (a changed file's stale chunks are removed)."""
        return self._apply(chunk_sources([paths] if isinstance(paths, (str, Path)) else list(paths),
                                         self._chunking), set())

    def add_documents(self, docs: Iterable[Document]) -> UpdateReport:
        """Add or replace Documents; all chunks of each Document's ``source`` are replaced."""
        return self._apply(chunk_sources(list(docs), self._chunking), set())

    def update(self, paths_or_docs: Any) -> UpdateReport:
        """Alias of :meth:`add_paths` / :meth:`add_documents` (re-indexes what changed)."""
        items = [paths_or_docs] if isinstance(paths_or_docs, (str, Path)) else list(paths_or_docs)
        return self._apply(chunk_sources(items, self._chunking), set())

    def delete_source(self, source: str | Path) -> UpdateReport:
        """Remove every chunk of a source (a file path as indexed, or a Document ``source``)."""
        key = str(source)
        if self._exists and not store.ids_by_source(self._conn, [key]):
            key = str(Path(key).resolve())
        return self._apply({}, {key})

    def sync(self, folder: str | Path) -> UpdateReport:
        """Make the collection match a folder: add new files, re-chunk changed ones, drop removed ones."""
        from module_ai.retrieval.loaders import iter_files

        root = Path(folder).resolve()
        upserts = chunk_sources([root], self._chunking)
        present = {str(f) for f in iter_files(root)}
        stored = store.ids_by_source(self._conn) if self._exists else {}
        gone = {s for s in stored if s not in present and Path(s).is_relative_to(root)}
        return self._apply(upserts, gone)

    # ----------------------------------------------------------------- search
    @property
    def settings(self) -> RetrievalSettings:
        """The default retrieval settings stored in the collection's manifest."""
        from module_ai.retrieval import RetrievalSettings

        data = dict(self.manifest.get("settings", {}).get("retrieval") or {})
        if "weights" in data:
            data["weights"] = tuple(data["weights"])
        return RetrievalSettings(**data)

    def set_defaults(self, **settings: Any) -> RetrievalSettings:
        """Change the stored default retrieval settings (e.g. tuned weights); returns the new ones."""
        new = self.settings.updated(**settings)
        settings_ = {**self.manifest.get("settings", {}), "retrieval": new.to_dict()}
        self.manifest = {**self.manifest, "settings": settings_}
        if self._exists:
            schema.write_manifest(self._conn, self.manifest)
        return new

    def _query_vector(self, query: str) -> list[float]:
        vector = list(self.embeddings.embed_query(query))
        dims = int(self.manifest.get("dimensions") or 0)
        if dims and len(vector) != dims:
            schema.check_manifest(self.manifest, embedding_model=None, dimensions=len(vector),
                                  where=self._conn.where)
        return vector

    def retrieve(self, query: str, settings: RetrievalSettings, *, limit: int | None = None,
                 vector_store: Any = None, expr: str | None = None) -> list[Document]:
        """Fused candidates, best first (the :class:`~module_ai.retrieval.protocol.SearchableStore` call)."""
        from module_ai.retrieval.milvus.search import search

        if vector_store is not None:
            raise KnowledgeBaseError("vector_store is not used by the Milvus backend: Milvus is the "
                                     "vector store")
        if not self._exists:
            return []
        return search(self._conn, self.config, query, self._query_vector, settings, limit=limit, expr=expr)

    def as_vectorstore(self) -> Any:
        """The collection as a ``langchain_milvus.Milvus`` VectorStore (for similarity / MMR search).

        Hybrid search through it needs ``ranker_type="rrf"`` or ``"weighted"`` (with 2 weights) and a
        ``fetch_k``; writes should go through this knowledge base (ids, metadata fields, cache).
        """
        from module_ai.retrieval.milvus._kbsupport import langchain_vectorstore

        return langchain_vectorstore(self)

    # ----------------------------------------------------------------- inspection
    def sources(self) -> list[str]:
        """The indexed sources."""
        return sorted(store.ids_by_source(self._conn)) if self._exists else []

    def documents(self) -> list[Document]:
        """All chunks as new Documents with ``id`` set."""
        from module_ai.retrieval.milvus._kbsupport import all_documents

        return all_documents(self._conn) if self._exists else []

    def stats(self) -> dict[str, Any]:
        """Counts, model, layout and settings of the collection."""
        from module_ai.retrieval.milvus._kbsupport import stats_of

        return stats_of(self)

    def close(self) -> None:
        """Close the embedding cache and the Milvus client."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MilvusKnowledgeBase({display_uri(self._conn.uri)!r}, "
                f"collection={self.config.collection!r}, model={self.manifest.get('embedding_model')!r})")
