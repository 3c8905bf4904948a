"""Incremental changes to a knowledge base: plan rows, reuse vectors and tokens, commit a generation."""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError, MissingDependencyError
from module_ai.retrieval.embedded import store
from module_ai.retrieval.embedded.index import build_bm25, normalize_rows
from module_ai.retrieval.loaders import load_file, normalize_path, scan_folder
from module_ai.retrieval.protocol import UpdateReport

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document

Record = dict[str, Any]
"""A chunk as stored: ``{"id", "text", "metadata"}`` (``chunks.jsonl`` row)."""
Chunker = Callable[[Iterable["Document"]], list[Record]]

__all__ = ["ON_ERROR", "Change", "commit_changes", "gc_paused", "plan_change"]

ON_ERROR = ("skip", "raise")
"""What a build/add/sync does with a file that cannot be read: list it in the report, or raise."""


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while indexing: it allocates ~10 containers per chunk and no cycles, so
    repeated full collections only cost time (about 15 % of a 100k-chunk build)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Change:
    """Chunks to put in per source (replacing the source's old chunks) and sources to remove."""

    upserts: dict[str, tuple[str, list[Record]]] = field(default_factory=dict)
    """source -> (content hash, chunk records ``{"id", "text", "metadata"}``)."""
    deletes: set[str] = field(default_factory=set)
    unchanged: list[str] = field(default_factory=list)
    replace_all: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    """path -> why it was not indexed."""


@dataclass
class State:
    """What a commit produced: the new manifest and in-memory data of the new generation."""

    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    vectors: np.ndarray
    bm25: Any
    sources: dict[str, Any]


def _load_chunks(f: Path, chunker: Chunker, on_error: str, change: Change) -> list[Record] | None:
    """Chunks of one file, or ``None`` (listed in ``change.skipped``) when it cannot be read."""
    try:
        return chunker(load_file(f))
    except MissingDependencyError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise anything on a malformed file (zip, XML, PDF)
        _failed(f, exc, on_error, change)
        return None


def _failed(f: Path, exc: Exception, on_error: str, change: Change) -> None:
    error = exc if isinstance(exc, KnowledgeBaseError) else KnowledgeBaseError(
        f"cannot read this {f.suffix or 'file'} ({type(exc).__name__}: {exc}); fix or remove it", path=str(f))
    if on_error == "raise":
        raise error from exc
    change.skipped[str(f)] = error.message


def _files(path: Path, follow_symlinks: bool, change: Change) -> list[Path]:
    if path.is_dir():
        files, skipped = scan_folder(path, follow_symlinks=follow_symlinks)
        change.skipped.update(skipped)
        return files
    f = normalize_path(path)
    if not f.is_file():
        raise KnowledgeBaseError("no such file (or not a regular file)", path=str(path))
    return [f]


def plan_change(items: Any, sources: Mapping[str, Any], chunker: Chunker, *, follow_symlinks: bool = False,
                on_error: str = "skip") -> Change:
    """Turn paths (files, folders) and Documents into a :class:`Change`; unchanged sources are skipped.

    ``chunker`` turns Documents into chunk records ``{"id", "text", "metadata"}`` (the rows stored).

    A file is unchanged when its bytes hash as before; Documents when their chunks' texts do. Files
    that cannot be read are listed in ``Change.skipped`` (``on_error="skip"``) or raise a
    :class:`KnowledgeBaseError` naming the file (``"raise"``).
    """
    if on_error not in ON_ERROR:
        raise KnowledgeBaseError(f"on_error must be one of {ON_ERROR}, not {on_error!r}", field="on_error")
    items = [items] if isinstance(items, (str, Path)) else list(items)
    change = Change()
    upserts: dict[str, tuple[str, list[Record]]] = {}
    for path in (Path(p) for p in items if isinstance(p, (str, Path))):
        for f in _files(path, follow_symlinks, change):
            try:
                digest = hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest()
            except OSError as exc:
                _failed(f, exc, on_error, change)
                continue
            if sources.get(str(f), {}).get("hash") == digest:
                upserts[str(f)] = (digest, [])
            elif (chunks := _load_chunks(f, chunker, on_error, change)) is not None:
                upserts[str(f)] = (digest, chunks)
    by_source: dict[str, list[Record]] = {}
    for chunk in chunker(d for d in items if not isinstance(d, (str, Path))):
        by_source.setdefault(chunk["metadata"]["source"], []).append(chunk)
    for src, chunks in by_source.items():
        digest = chunks[0]["id"] if len(chunks) == 1 else store.text_hash(" ".join([d["id"] for d in chunks]))
        upserts[src] = (digest, chunks)  # chunk ids already hash source + text
    for src, (digest, chunks) in upserts.items():
        if sources.get(src, {}).get("hash") == digest:
            change.unchanged.append(src)
        else:
            change.upserts[src] = (digest, chunks)
    return change


def _old_arrays(kb_dir: Path, manifest: Mapping[str, Any], n: int) -> tuple[Any, list[list[str]]]:

    if not n:
        return None, []
    gen = store.generation_dir(kb_dir, manifest)
    return store.load_vectors(gen, n, mmap=True), store.load_tokens(gen, n)


def _assemble(kb_dir: Path, manifest: Mapping[str, Any], n_old: int, new_ids: Sequence[str],
              old_row: Mapping[str, int], fresh: Sequence[Record], vecs: np.ndarray | None, dims: int,
              tokenize: Callable[[str], list[str]]) -> tuple[np.ndarray, list[list[str]]]:
    """Vectors and tokens of the new rows: fresh chunks from ``vecs``/``tokenize``, the rest reused."""
    import numpy as np

    if not new_ids:
        return np.zeros((0, dims), dtype=np.float32), []
    if len(fresh) == len(new_ids) and all(d["id"] == c for d, c in zip(fresh, new_ids)):
        return vecs, [tokenize(d["text"]) for d in fresh]  # a build: every row new, in order
    old_vecs, old_tokens = _old_arrays(kb_dir, manifest, n_old)
    fresh_row = {d["id"]: i for i, d in enumerate(fresh)}
    vectors = np.zeros((len(new_ids), dims), dtype=np.float32)
    is_fresh = np.fromiter((cid in fresh_row for cid in new_ids), dtype=bool, count=len(new_ids))
    if is_fresh.any():
        vectors[is_fresh] = vecs[[fresh_row[c] for c, f in zip(new_ids, is_fresh) if f]]
    if not is_fresh.all():
        vectors[~is_fresh] = old_vecs[[old_row[c] for c, f in zip(new_ids, is_fresh) if not f]]
    tokens = [tokenize(fresh[fresh_row[c]]["text"]) if f else old_tokens[old_row[c]]
              for c, f in zip(new_ids, is_fresh)]
    return vectors, tokens


def commit_changes(
    kb_dir: Path,
    manifest: dict[str, Any],
    records: Sequence[dict[str, Any]],
    sources: Mapping[str, Any],
    change: Change,
    *,
    embed: Callable[[list[str]], tuple[np.ndarray, int]],
    tokenize: Callable[[str], list[str]],
) -> tuple[State | None, UpdateReport]:
    """Apply a change; return the new state (``None`` if nothing changed) and a report.

    Chunks whose id (source + text) is already indexed keep their vector and tokens; other chunks are
    embedded through ``embed`` (which consults the embedding cache) and tokenized.
    """
    touched = set(change.upserts) | change.deletes
    keep = [] if change.replace_all else [i for i, r in enumerate(records) if r["metadata"].get("source") not in touched]
    old_row = {r["id"]: i for i, r in enumerate(records)}
    new_docs = [d for _, docs in change.upserts.values() for d in docs]
    new_ids = [records[i]["id"] for i in keep] + [d["id"] for d in new_docs]
    gone = {r["metadata"].get("source") for r in records} - {records[i]["metadata"].get("source") for i in keep}
    if change.replace_all:
        gone -= set(change.upserts)
    report = _report(change, sources, gone, old_row, new_docs, len(records), len(new_ids))
    same_hashes = all(sources.get(s, {}).get("hash") == h for s, (h, _) in change.upserts.items())
    unchanged = new_ids == [r["id"] for r in records] and same_hashes and not change.deletes & set(sources)
    if unchanged and not change.replace_all:  # a build always commits
        return None, UpdateReport(**{**report, "generation": manifest.get("generation")})
    fresh = [d for d in new_docs if d["id"] not in old_row]
    vecs, embedded = embed([d["text"] for d in fresh]) if fresh else (None, 0)
    if vecs is not None and manifest["metric"] == "cosine":
        vecs = normalize_rows(vecs, inplace=True)
    dims = int(vecs.shape[1]) if vecs is not None else int(manifest.get("dimensions") or 0)
    vectors, tokens = _assemble(kb_dir, manifest, len(records), new_ids, old_row, fresh, vecs, dims, tokenize)
    new_records = [records[i] for i in keep] + new_docs  # chunk records are stored as they are
    new_sources = {s: v for s, v in sources.items() if s not in touched and not change.replace_all}
    for src, (digest, docs) in change.upserts.items():
        new_sources[src] = {"hash": digest, "chunks": len(docs)}
    bm25 = build_bm25(tokens) if tokens else None
    meta = {**manifest, "dimensions": dims or manifest.get("dimensions"),
            "counts": {"chunks": len(new_records), "sources": len(new_sources)}}
    meta = store.write_generation(kb_dir, meta, new_records, vectors, tokens, new_sources, bm25)
    report.update(embedded=embedded, generation=meta["generation"])
    return State(meta, new_records, vectors, bm25, new_sources), UpdateReport(**report)


def _report(change: Change, sources: Mapping[str, Any], gone: set[str], old_row: Mapping[str, int],
            new_docs: Sequence[Record], n_old: int, n_new: int) -> dict[str, Any]:
    added = sorted(s for s in change.upserts if s not in sources)
    updated = sorted(s for s in change.upserts if s in sources)
    reused = sum(1 for d in new_docs if d["id"] in old_row)
    return {
        "added": added,
        "updated": updated,
        "deleted": sorted(s for s in gone if s is not None and s not in change.upserts),
        "unchanged": sorted(change.unchanged),
        "chunks_added": len(new_docs) - reused,
        "chunks_removed": n_old - (n_new - (len(new_docs) - reused)),
        "embedded": 0,
        "chunks": n_new,
        "generation": None,
        "skipped": dict(sorted(change.skipped.items())),
    }
