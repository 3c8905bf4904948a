"""On-disk layout of a knowledge base folder, atomic commits and the embedding cache.

Layout::

    kb_dir/
      manifest.json        the committed state: settings + the name of the current generation
      embedding_cache/     embedding cache: (model, dimensions, text hash) -> float32 vector
      gen-000007/          one immutable generation
        chunks.jsonl       one chunk per line: {"id", "text", "metadata"}, row order = vector order
        vectors.npy        float32 (rows, dimensions); unit-normalized when the metric is cosine
        tokens.txt         the chunk's keyword tokens joined by spaces (tokenization cache)
        sources.json       {source: {"hash", "chunks"}} for incremental sync
        bm25/              the bm25s index

A commit writes a new generation into ``.tmp-<random>/``, renames it to ``gen-<n>/`` and then
replaces ``manifest.json`` with ``os.replace``. A crash at any point leaves the previous manifest
pointing at an intact generation; the next writer removes the leftovers. Embedding-cache batches are
committed as they arrive (:mod:`module_ai.retrieval.embedding_cache`), so an interrupted build resumes without
re-embedding.

One writer at a time (:mod:`module_ai.retrieval.embedded.lock`); readers keep the generation they loaded. A
commit keeps the generation it replaced, so a reader that read the old manifest can still load it;
the one before is removed, and a reader that loses that race retries on the new manifest. The
manifest lists every file of its generation with a checksum (:mod:`module_ai.retrieval.embedded.integrity`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring as _ESCAPE
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.embedded.integrity import check_manifest, digest_files, reading, seal_manifest
from module_ai.retrieval.embedding_cache import CACHE_DIR, text_hash

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CACHE_DIR", "FORMAT", "FORMAT_VERSION", "MANIFEST", "read_manifest", "text_hash", "write_generation"]

FORMAT = "module_ai.knowledge_base"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    if path.name == MANIFEST:
        data = seal_manifest(data)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_manifest(kb_dir: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``.

    Raises:
        KnowledgeBaseError: no committed knowledge base here, or an unknown format version.
    """
    path = Path(kb_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KnowledgeBaseError(
            "no knowledge base here (manifest.json missing); create one with KnowledgeBase.build", path=str(kb_dir)
        ) from exc
    except NotADirectoryError as exc:
        raise KnowledgeBaseError("not a knowledge-base folder (a file is in the way)", path=str(kb_dir)) from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise KnowledgeBaseError(f"manifest.json is unreadable ({exc}); rebuild the index", path=str(path)) from exc
    version = manifest.get("format_version", 0) if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(version, int) \
            or version > FORMAT_VERSION:
        raise KnowledgeBaseError(
            f"not a module_ai knowledge base of format version <= {FORMAT_VERSION}; upgrade module_ai or rebuild",
            path=str(path),
        )
    return check_manifest(manifest, path)


def new_manifest(kb_dir: Path, **settings: Any) -> dict[str, Any]:
    """A manifest for a fresh build; keeps counting generations from a previous index in ``kb_dir``.

    Args:
        kb_dir: the index folder.
        **settings: ``embedding_model``, ``dimensions``, ``metric``, ``tokenizer``, ``vector_backend``,
            ``chunking`` and ``retrieval``.
    """
    try:
        previous = read_manifest(kb_dir).get("generation")
    except KnowledgeBaseError:
        previous = None
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **settings,
            "requested_dimensions": settings.get("dimensions"), "generation": previous,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_generation(
    kb_dir: Path,
    manifest: dict[str, Any],
    records: Iterable[dict[str, Any]],
    vectors: np.ndarray,
    tokens: Sequence[Sequence[str]],
    sources: dict[str, Any],
    bm25: Any,
) -> dict[str, Any]:
    """Write a new generation and commit it by replacing the manifest; return the new manifest."""
    import numpy as np

    kb_dir = Path(kb_dir)
    kb_dir.mkdir(parents=True, exist_ok=True)
    tmp = kb_dir / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(map(record_line, records))
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / "vectors.npy", "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / "tokens.txt", "w", encoding="utf-8") as fh:  # line by line: no second copy of all tokens
        fh.writelines(" ".join(t) + "\n" for t in tokens)
    (tmp / "sources.json").write_text(json.dumps(sources, ensure_ascii=False), encoding="utf-8")
    if bm25 is not None:
        bm25.save(str(tmp / "bm25"), show_progress=False)
    files = digest_files(tmp)
    previous = manifest.get("generation")
    final = kb_dir / f"gen-{_next_number(kb_dir, previous):06d}"
    os.rename(tmp, final)
    _fsync_dir(kb_dir)
    new = {**manifest, "generation": final.name, "files": files, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json_atomic(kb_dir / MANIFEST, new)
    cleanup(kb_dir, keep={final.name, str(previous)})
    return new


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_RECORD_KEYS = ("id", "text", "metadata")


def record_line(rec: dict[str, Any]) -> str:
    """One ``chunks.jsonl`` line: ``json`` of the record, its two strings escaped directly (a third
    faster than encoding the whole dict; the same bytes)."""
    if tuple(rec) == _RECORD_KEYS and type(rec["id"]) is str and type(rec["text"]) is str:
        return (f'{{"id": {_ESCAPE(rec["id"])}, "text": {_ESCAPE(rec["text"])}, '
                f'"metadata": {_ENCODE(rec["metadata"])}}}\n')
    return _ENCODE(rec) + "\n"


def _next_number(kb_dir: Path, previous: str | None) -> int:
    """One above every generation number in use: never reuses a name a reader might be loading."""
    numbers = [int(str(previous or "gen-0").rsplit("-", 1)[-1])]
    numbers += [int(e.name[4:]) for e in kb_dir.iterdir() if e.name.startswith("gen-") and e.name[4:].isdigit()]
    return max(numbers) + 1


def write_manifest(kb_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (settings-only change, same generation)."""
    _write_json_atomic(Path(kb_dir) / MANIFEST, manifest)


def cleanup(kb_dir: Path, keep: set[str]) -> None:
    """Remove temporary directories and generations not in ``keep`` (writer only, under the lock).

    ``keep`` holds the new generation and the one it replaced: readers that read the previous
    manifest may still be loading that one.
    """
    for entry in Path(kb_dir).iterdir():
        stale = entry.name.startswith(".tmp-") or (entry.name.startswith("gen-") and entry.name not in keep)
        if stale and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".manifest.json.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)


def generation_dir(kb_dir: Path, manifest: dict[str, Any]) -> Path:
    """Directory of the committed generation; raises KnowledgeBaseError if it is missing."""
    gen = Path(kb_dir) / str(manifest.get("generation"))
    if not gen.is_dir():
        raise KnowledgeBaseError(f"generation {gen.name} is missing; rebuild the index", path=str(kb_dir))
    return gen


def _record(rec: Any) -> dict[str, Any]:
    if not (isinstance(rec, dict) and isinstance(rec.get("id"), str) and isinstance(rec.get("text"), str)
            and isinstance(rec.get("metadata"), dict)):
        raise TypeError("a line is not a chunk {id, text, metadata}")
    return rec


def load_records(gen: Path) -> list[dict[str, Any]]:
    """Read ``chunks.jsonl`` of a generation."""
    path = gen / "chunks.jsonl"
    with reading(path), open(path, encoding="utf-8") as fh:
        return [_record(json.loads(line)) for line in fh if line.strip()]


def load_tokens(gen: Path, rows: int) -> list[list[str]]:
    """Read the cached keyword tokens of a generation, one list per chunk row (``rows`` expected)."""
    path = gen / "tokens.txt"
    with reading(path), open(path, encoding="utf-8") as fh:
        tokens = [line.rstrip("\n").split(" ") if line.strip() else [] for line in fh]
        if len(tokens) != rows:
            raise ValueError(f"{len(tokens)} lines for {rows} chunks")
        return tokens


def load_vectors(gen: Path, rows: int, *, mmap: bool = False) -> np.ndarray:
    """Read ``vectors.npy`` of a generation and check its shape (``rows`` x d, float32)."""
    import numpy as np

    path = gen / "vectors.npy"
    with reading(path):
        vectors = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.dtype != np.float32:
            raise ValueError(f"shape {vectors.shape} {vectors.dtype}, expected ({rows}, d) float32")
        if not mmap and not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        return vectors


def load_sources(gen: Path) -> dict[str, Any]:
    """Read ``sources.json`` of a generation."""
    path = gen / "sources.json"
    with reading(path):
        sources = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
            raise ValueError("not a map of sources")
        return sources


def load_generation(kb_dir: Path, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], np.ndarray, Any,
                                                                   dict[str, Any]]:
    """Verify and read the committed generation: ``(records, vectors, bm25, sources)``.

    Raises:
        KnowledgeBaseError: the generation is missing, or a file of it is damaged (named).
    """
    from module_ai.errors import require
    from module_ai.retrieval.embedded.integrity import verify_generation

    gen = generation_dir(kb_dir, manifest)
    verify_generation(gen, manifest)
    records = load_records(gen)
    vectors = load_vectors(gen, len(records))
    bm25 = None
    if records:
        bm25_dir = gen / "bm25"
        with reading(bm25_dir):
            bm25 = require("bm25s", "rag").BM25.load(str(bm25_dir), show_progress=False)
    return records, vectors, bm25, load_sources(gen)


def open_generation(kb_dir: Path, attempts: int = 5) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """Read the manifest and its generation; retry when a writer replaced both meanwhile.

    A reader that read the manifest just before two commits in a row may find its generation
    removed; the manifest then names a newer one, which is read instead.
    """
    manifest = read_manifest(kb_dir)
    for _ in range(attempts):
        try:
            return manifest, load_generation(kb_dir, manifest)
        except KnowledgeBaseError:
            newer = read_manifest(kb_dir)
            if newer.get("generation") == manifest.get("generation"):
                raise
            manifest = newer
    return manifest, load_generation(kb_dir, manifest)


def catch_up(kb_dir: Path, loaded: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """Under the writer lock: the committed manifest, and its state if it is not the ``loaded`` one.

    The same generation is only verified (a write never builds on a damaged one); a newer one, written
    by another writer since ``loaded`` was read, is loaded so its changes are kept.
    """
    from module_ai.retrieval.embedded.integrity import verify_generation

    on_disk = read_manifest(kb_dir)
    same = all(on_disk.get(k) == loaded.get(k) for k in ("generation", "files"))
    if same and on_disk.get("files") is not None:
        verify_generation(generation_dir(kb_dir, on_disk), on_disk)
        return on_disk, None
    return on_disk, load_generation(kb_dir, on_disk)
