"""``KnowledgeBase``: an embedded hybrid (BM25 + dense) index stored in one folder, no server.

See :mod:`module_ai.retrieval.embedded.store` for the folder layout and the atomic commit protocol.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.embedded import store
from module_ai.retrieval.embedded.lock import DEFAULT_LOCK_TIMEOUT, writer_lock
from module_ai.retrieval.embedded.search import search_index
from module_ai.retrieval.embedded.update import Change, commit_changes, gc_paused, plan_change
from module_ai.retrieval.embedding import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    embed_texts,
    model_name_of,
)
from module_ai.retrieval.embedding_cache import EmbeddingCache
from module_ai.retrieval.loaders import normalize_path, scan_folder
from module_ai.retrieval.protocol import UpdateReport
from module_ai.retrieval.retriever import RetrieverMixin
from module_ai.retrieval.settings import DEFAULT_SETTINGS, RetrievalSettings
from module_ai.retrieval.splitter import iter_chunks
from module_ai.retrieval.tokenizer import DEFAULT_TOKENIZER, get_tokenizer

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore


__all__ = ["KnowledgeBase"]


class KnowledgeBase(RetrieverMixin):
    """A persistent hybrid knowledge base: chunk store + float32 vectors + BM25, in one folder.

    Create one with :meth:`build`, reopen it with :meth:`open`. Changes (:meth:`add_paths`,
    :meth:`add_documents`, :meth:`delete_source`, :meth:`sync`) are committed atomically; chunks
    already embedded (same text, same model) are never embedded again.

    Example:
        >>> kb = KnowledgeBase.build("docs/", "kb/", embeddings, embedding_model_name="bge-m3")  # doctest: +SKIP
        >>> kb.search("如何配置代理？", k=3)[0].metadata["source"]  # doctest: +SKIP
        '/abs/docs/proxy.md'
        >>> kb = KnowledgeBase.open("kb/", embeddings); kb.sync("docs/")  # doctest: +SKIP
    """

    def __init__(self, kb_dir: str | Path, embeddings: Embeddings | None, manifest: dict[str, Any], *,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 show_progress: bool = True, vector_backend: str | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, follow_symlinks: bool = False,
                 on_error: str = "skip") -> None:
        """Use :meth:`build` or :meth:`open` instead."""
        import numpy as np

        from module_ai.retrieval.embedded.index import SearchIndex

        self.kb_dir = Path(kb_dir)
        self.embeddings = embeddings
        self.manifest = manifest
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.show_progress = show_progress
        self.vector_backend = vector_backend or manifest.get("vector_backend", "auto")
        self.lock_timeout, self.follow_symlinks, self.on_error = lock_timeout, follow_symlinks, on_error
        self._cache: EmbeddingCache | None = None
        self.last_report: UpdateReport | None = None  # of the last build/add/sync/delete
        self._records: list[dict[str, Any]] = []
        self._sources: dict[str, Any] = {}
        self._index = SearchIndex([], np.zeros((0, 0), np.float32), None, metric=manifest["metric"],
                                  tokenizer=manifest["tokenizer"], vector_backend="numpy")

    # ----------------------------------------------------------------- create / open
    @classmethod
    def build(cls, path_or_docs: str | Path | Sequence[str | Path] | Sequence[Document], kb_dir: str | Path,
              embeddings: Embeddings, *, embedding_model_name: str | None = None, dimensions: int | None = None,
              metric: str = "cosine", chunk_size: int = 500, chunk_overlap: int = 80, chunk_unit: str = "chars",
              tokenizer: dict[str, Any] | None = None, vector_backend: str = "auto",
              batch_size: int = DEFAULT_BATCH_SIZE, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
              show_progress: bool = True, **safety: Any) -> KnowledgeBase:
        """Index files, folders or Documents into ``kb_dir`` (replacing what the folder held).

        Args:
            path_or_docs: a file or folder, a list of them, or LangChain Documents (split here).
            kb_dir: the index folder (created if missing; its embedding cache is reused).
            embeddings: any LangChain Embeddings.
            embedding_model_name: recorded in the manifest and the cache key (default: the object's
                ``model``/``model_name`` attribute, else its class name).
            dimensions: expected vector size (``None``: what the model returns).
            metric: ``"cosine"``, ``"ip"`` or ``"l2"``; fixed for the index's lifetime.
            chunk_size, chunk_overlap, chunk_unit: splitter settings (see :func:`split_documents`).
            tokenizer: keyword tokenizer settings (default :data:`DEFAULT_TOKENIZER`).
            vector_backend: ``"auto"``, ``"numpy"`` or ``"faiss"``.
            batch_size: texts per embedding call (the model's ``max_batch``).
            max_concurrency: embedding calls in flight (the model's ``max_concurrency``).
            show_progress: show tqdm progress bars.
            **safety: ``lock_timeout`` (seconds to wait for another writer of ``kb_dir``, default
                :data:`~module_ai.retrieval.embedded.lock.DEFAULT_LOCK_TIMEOUT`), ``follow_symlinks``
                (follow links that leave an indexed folder; default ``False``: skipped and listed in
                ``last_report.skipped``), ``on_error`` (``"skip"``: list unreadable files in
                ``last_report.skipped``; ``"raise"``: a KnowledgeBaseError naming the file). Also
                accepted by :meth:`open`.

        Raises:
            KnowledgeBaseError: bad settings, the embedding model returned unexpected vectors, or
                another writer held the folder for ``lock_timeout`` seconds.
        """
        from module_ai.retrieval.embedded.index import METRICS

        if metric not in METRICS:
            raise KnowledgeBaseError(f"metric must be one of {METRICS}, not {metric!r}", field="metric")
        if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size or chunk_unit not in ("chars", "tokens"):
            raise KnowledgeBaseError(f"need chunk_size > chunk_overlap >= 0 and chunk_unit chars|tokens, got "
                                     f"{chunk_size}, {chunk_overlap}, {chunk_unit!r}", field="chunk_size")
        manifest = store.new_manifest(
            Path(kb_dir), embedding_model=embedding_model_name or model_name_of(embeddings), dimensions=dimensions,
            metric=metric, tokenizer={**DEFAULT_TOKENIZER, **(tokenizer or {})}, vector_backend=vector_backend,
            chunking={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "unit": chunk_unit},
            retrieval=DEFAULT_SETTINGS.to_dict())
        kb = cls(kb_dir, embeddings, manifest, batch_size=batch_size, max_concurrency=max_concurrency,
                 show_progress=show_progress, **safety)
        change = kb._change_for(path_or_docs)
        change.replace_all = True
        with kb._writing(refresh=False):
            kb.manifest = {**manifest, "generation": store.new_manifest(kb.kb_dir)["generation"]}
            kb._commit(change, force=True)
        return kb

    @classmethod
    def open(cls, kb_dir: str | Path, embeddings: Embeddings | None, *, embedding_model_name: str | None = None,
             batch_size: int = DEFAULT_BATCH_SIZE, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
             show_progress: bool = True, vector_backend: str | None = None, **safety: Any) -> KnowledgeBase:
        """Open the last committed state of a knowledge base (``safety``: see :meth:`build`).

        ``embeddings`` may be ``None`` for read-only keyword search (``mode="bm25"``).

        Raises:
            KnowledgeBaseError: no index in ``kb_dir``, a damaged one, or ``embedding_model_name``
                differs from the model the index was built with.
        """
        manifest = store.read_manifest(Path(kb_dir))
        if embedding_model_name and embedding_model_name != manifest["embedding_model"]:
            raise KnowledgeBaseError(
                f"index was built with embedding model {manifest['embedding_model']!r}, not "
                f"{embedding_model_name!r}; open it with that model or rebuild", path=str(kb_dir),
                model=embedding_model_name)
        kb = cls(kb_dir, embeddings, manifest, batch_size=batch_size, max_concurrency=max_concurrency,
                 show_progress=show_progress, vector_backend=vector_backend, **safety)
        kb._load()
        return kb

    def _load(self) -> None:
        self.manifest, state = store.open_generation(self.kb_dir)
        self._set_state(*state)

    @contextlib.contextmanager
    def _writing(self, *, refresh: bool = True) -> Iterator[None]:
        """Hold the folder's writer lock; first catch up with commits of other writers.

        Raises:
            KnowledgeBaseError: the committed generation is damaged (nothing is written on top of it).
        """
        with writer_lock(self.kb_dir, self.lock_timeout):
            if refresh:
                self.manifest, state = store.catch_up(self.kb_dir, self.manifest)
                if state is not None:
                    self._set_state(*state)
            yield

    def _set_state(self, records: list[dict[str, Any]], vectors: np.ndarray, bm25: Any,
                   sources: dict[str, Any]) -> None:
        from module_ai.retrieval.embedded.index import SearchIndex

        if len(records) != len(vectors):
            raise KnowledgeBaseError(f"{len(records)} chunks but {len(vectors)} vectors; rebuild", path=str(self.kb_dir))
        self._index = SearchIndex([r["id"] for r in records], vectors, bm25, metric=self.manifest["metric"],
                                  tokenizer=self.manifest["tokenizer"], vector_backend=self.vector_backend)
        self._records, self._sources = records, sources

    # ----------------------------------------------------------------- changes
    def _chunks(self, docs: Iterable[Document]) -> list[dict[str, Any]]:
        """The chunk records ``{"id", "text", "metadata"}`` of :func:`split_documents` (no Documents)."""
        c = self.manifest["chunking"]
        return [{"id": cid, "text": text, "metadata": meta}
                for text, meta, cid in iter_chunks(docs, c["chunk_size"], c["chunk_overlap"], unit=c["unit"])]

    def _change_for(self, items: Any) -> Change:
        with gc_paused():
            return plan_change(items, self._sources, self._chunks, follow_symlinks=self.follow_symlinks,
                               on_error=self.on_error)

    def _embeddings(self) -> Embeddings:
        if self.embeddings is None:
            raise KnowledgeBaseError("opened without embeddings: pass the embedding model to change the index "
                                     "or to search in 'dense'/'hybrid' mode", path=str(self.kb_dir))
        return self.embeddings

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        if self._cache is None:
            self._cache = EmbeddingCache(self.kb_dir / store.CACHE_DIR)
        return embed_texts(texts, self._embeddings(), model=self.manifest["embedding_model"],
                          dimensions=self.manifest.get("requested_dimensions"), cache=self._cache,
                          batch_size=self.batch_size, max_concurrency=self.max_concurrency,
                          show_progress=self.show_progress)

    def _commit(self, change: Change, *, force: bool = False) -> UpdateReport:
        self.kb_dir.mkdir(parents=True, exist_ok=True)
        if force:  # build: nothing carried over in memory
            self._records, self._sources = [], {}
        with gc_paused():
            state, report = commit_changes(self.kb_dir, self.manifest, self._records, self._sources, change,
                                           embed=self._embed, tokenize=get_tokenizer(self.manifest["tokenizer"]))
        if state is not None:
            self.manifest = state.manifest
            self._set_state(state.records, state.vectors, state.bm25, state.sources)
        if self._cache is not None:
            self._cache.compact(self.manifest["embedding_model"], int(self.manifest.get("requested_dimensions") or 0))
        self.last_report = report
        return report

    def add_paths(self, paths: str | Path | Iterable[str | Path]) -> UpdateReport:
        """Add or update files and folders (unchanged files are skipped without being read twice).

        Files that cannot be read are listed in the report's ``skipped`` (or raise, ``on_error="raise"``).
        """
        items = list(paths) if not isinstance(paths, (str, Path)) else [paths]
        with self._writing():
            return self._commit(self._change_for(items))

    def add_documents(self, docs: Iterable[Document]) -> UpdateReport:
        """Add or replace Documents; all chunks of each Document's ``source`` are replaced."""
        docs = list(docs)
        with self._writing():
            return self._commit(self._change_for(docs))

    def delete_source(self, source: str | Path) -> UpdateReport:
        """Remove every chunk of a source (a file path as indexed, or a Document ``source``)."""
        with self._writing():
            key = str(source)
            if key not in self._sources:
                key = str(normalize_path(source))
            return self._commit(Change(deletes={key} if key in self._sources else set()))

    def sync(self, folder: str | Path) -> UpdateReport:
        """Make the index match a folder: add new files, re-chunk changed ones, drop removed ones.

        Files no longer reachable (removed, or behind a link that is not followed) are dropped; files
        present but unreadable keep their last indexed version and are listed in ``skipped``.
        """
        root = normalize_path(folder).resolve()
        with self._writing():
            change = self._change_for([root])
            present = {str(f) for f in scan_folder(root, follow_symlinks=self.follow_symlinks)[0]}
            change.deletes = {s for s in self._sources if s not in present and Path(s).is_relative_to(root)}
            return self._commit(change)

    # ----------------------------------------------------------------- search
    @property
    def settings(self) -> RetrievalSettings:
        """The default retrieval settings stored in the manifest."""
        data = dict(self.manifest.get("retrieval") or {})
        if "weights" in data:
            data["weights"] = tuple(data["weights"])
        return RetrievalSettings(**data)

    def set_defaults(self, **settings: Any) -> RetrievalSettings:
        """Change the stored default retrieval settings (e.g. tuned weights); returns the new ones."""
        with self._writing():
            new = self.settings.updated(**settings)
            self.manifest = {**self.manifest, "retrieval": new.to_dict()}
            store.write_manifest(self.kb_dir, self.manifest)
        return new

    def retrieve(self, query: str, settings: RetrievalSettings, *, limit: int | None = None,
                 vector_store: VectorStore | None = None) -> list[Document]:
        """Fused candidates, best first (the :class:`~module_ai.retrieval.protocol.SearchableStore` call)."""
        return search_index(self._index, self._records, query, lambda q: self._embeddings().embed_query(q), settings,
                            limit=limit, vector_store=vector_store)

    # ----------------------------------------------------------------- inspection
    def documents(self) -> list[Document]:
        """All chunks as new Documents with ``id`` set (e.g. to fill another VectorStore)."""
        from langchain_core.documents import Document

        return [Document(page_content=r["text"], metadata=dict(r["metadata"]), id=r["id"]) for r in self._records]

    def sources(self) -> list[str]:
        """The indexed sources."""
        return sorted(self._sources)

    def stats(self) -> dict[str, Any]:
        """Counts, model, metric, settings and disk size of the committed state."""
        disk = sum(p.stat().st_size for p in self.kb_dir.rglob("*") if p.is_file())
        return {
            "kb_dir": str(self.kb_dir), "generation": self.manifest.get("generation"),
            "chunks": len(self._records), "sources": len(self._sources),
            "embedding_model": self.manifest["embedding_model"], "dimensions": self._index.dims or None,
            "metric": self.manifest["metric"], "vector_backend": "faiss" if self._index._faiss else "numpy",
            "tokenizer": self.manifest["tokenizer"], "chunking": self.manifest["chunking"],
            "retrieval": self.settings.to_dict(), "disk_bytes": disk,
        }

    def close(self) -> None:
        """Close the embedding cache (the index itself holds no open files)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.kb_dir)!r}, chunks={len(self._records)}, model={self.manifest['embedding_model']!r})"
