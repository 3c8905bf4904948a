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
One writer at a time; readers keep the generation they loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
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
    except (OSError, ValueError) as exc:
        raise KnowledgeBaseError(f"manifest.json is unreadable ({exc}); rebuild the index", path=str(path)) from exc
    if manifest.get("format") != FORMAT or int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise KnowledgeBaseError(
            f"not a module_ai knowledge base of format version <= {FORMAT_VERSION}; upgrade module_ai or rebuild",
            path=str(path),
        )
    return manifest


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
        encode = json.JSONEncoder(ensure_ascii=False).encode
        fh.writelines(encode(rec) + "\n" for rec in records)
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / "vectors.npy", "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
        fh.flush()
        os.fsync(fh.fileno())
    (tmp / "tokens.txt").write_text("".join(" ".join(t) + "\n" for t in tokens), encoding="utf-8")
    (tmp / "sources.json").write_text(json.dumps(sources, ensure_ascii=False), encoding="utf-8")
    if bm25 is not None:
        bm25.save(str(tmp / "bm25"), show_progress=False)
    number = int(str(manifest.get("generation") or "gen-0").rsplit("-", 1)[-1]) + 1
    final = kb_dir / f"gen-{number:06d}"
    if final.exists():  # left by a crash after rename, before the manifest was replaced
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(kb_dir)
    new = {**manifest, "generation": final.name, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json_atomic(kb_dir / MANIFEST, new)
    cleanup(kb_dir, keep=final.name)
    return new


def write_manifest(kb_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (settings-only change, same generation)."""
    _write_json_atomic(Path(kb_dir) / MANIFEST, manifest)


def cleanup(kb_dir: Path, keep: str) -> None:
    """Remove temporary directories and generations other than ``keep`` (writer only)."""
    for entry in Path(kb_dir).iterdir():
        stale = entry.name.startswith(".tmp-") or (entry.name.startswith("gen-") and entry.name != keep)
        if stale and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".manifest.json.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)


def generation_dir(kb_dir: Path, manifest: dict[str, Any]) -> Path:
    """Directory of the committed generation; raises KnowledgeBaseError if it is missing."""
    gen = Path(kb_dir) / str(manifest.get("generation"))
    if not (gen / "chunks.jsonl").is_file():
        raise KnowledgeBaseError(f"generation {gen.name} is missing or incomplete; rebuild the index", path=str(kb_dir))
    return gen


def load_records(gen: Path) -> list[dict[str, Any]]:
    """Read ``chunks.jsonl`` of a generation."""
    with open(gen / "chunks.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_tokens(gen: Path) -> list[list[str]]:
    """Read the cached keyword tokens of a generation, one list per chunk row."""
    with open(gen / "tokens.txt", encoding="utf-8") as fh:
        return [line.rstrip("\n").split(" ") if line.strip() else [] for line in fh]


def load_sources(gen: Path) -> dict[str, Any]:
    """Read ``sources.json`` of a generation."""
    return json.loads((gen / "sources.json").read_text(encoding="utf-8"))
