"""Embedding cache: append-only NumPy shards keyed by (model, dimensions, text hash).

Layout::

    embedding_cache/
      <slug>/                 one folder per (model, dimensions); slug = hash of both
        meta.json             {"model", "dimensions"}
        <shard>.npy           float32 (n, d) raw model output
        <shard>.keys          n x 16 bytes: blake2b digests of the texts

A shard is written as ``.npy`` first and ``.keys`` second, each through a temporary file and
``os.replace``; a shard counts only once its ``.keys`` exists, so a killed process leaves at most an
invisible half shard. Each embedding batch becomes one shard (committed as it arrives); :meth:`compact`
merges small shards. Writing a batch costs about one ``np.save`` (SQLite with 1.5 KiB blobs was 30-140x
slower here).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CACHE_DIR", "COMPACT_SHARDS", "MERGED_ROWS", "EmbeddingCache", "text_hash"]

CACHE_DIR = "embedding_cache"
"""The cache's folder name inside a knowledge base (embedded and Milvus share the layout and keys)."""

COMPACT_SHARDS = 32
""":meth:`EmbeddingCache.compact` merges a model's small shards once there are more than this many."""

SMALL_SHARD_ROWS = 1024
"""Shards with fewer rows than this count as small (worth merging)."""

MERGED_ROWS = 8192
""":meth:`EmbeddingCache.compact` writes merged shards of about this many rows (bounded memory)."""

_KEY = 16


def _slug(model: str, dims: int) -> str:
    return hashlib.blake2b(f"{model}\x00{dims}".encode(), digest_size=8).hexdigest()


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


class EmbeddingCache:
    """A folder of embedding shards (see the module docstring).

    Args:
        root: the cache folder (created on first write).

    Example:
        >>> import tempfile
        >>> cache = EmbeddingCache(tempfile.mkdtemp())
        >>> cache.put_many("m", 0, ["0" * 32], [[0.1, 0.2]]); sorted(cache.get_many("m", 0, ["0" * 32, "1" * 32]))
        ['00000000000000000000000000000000']
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._index: dict[str, dict[bytes, tuple[str, int]]] = {}

    def _load_index(self, slug: str) -> dict[bytes, tuple[str, int]]:
        if slug in self._index:
            return self._index[slug]
        index: dict[bytes, tuple[str, int]] = {}
        folder = self.root / slug
        for keys in sorted(folder.glob("*.keys")) if folder.is_dir() else []:
            data = keys.read_bytes()
            if len(data) % _KEY or not keys.with_suffix(".npy").is_file():
                continue  # damaged shard: ignore it, its texts will be embedded again
            for row in range(len(data) // _KEY):
                index[data[row * _KEY : (row + 1) * _KEY]] = (keys.stem, row)
        self._index[slug] = index
        return index

    def get_many(self, model: str, dims: int, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Return ``{hash: float32 vector}`` for the hex text hashes present in the cache."""
        import numpy as np

        slug = _slug(model, dims)
        index = self._load_index(slug)
        by_shard: dict[str, list[tuple[str, int]]] = {}
        for h in dict.fromkeys(hashes):
            hit = index.get(bytes.fromhex(h))
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((h, hit[1]))
        found: dict[str, np.ndarray] = {}
        for shard, items in by_shard.items():
            try:
                mat = np.load(self.root / slug / f"{shard}.npy", mmap_mode="r")
                rows = np.asarray(mat[[r for _, r in items]], dtype=np.float32)
            except (OSError, ValueError, IndexError):
                continue
            found.update((h, rows[i]) for i, (h, _) in enumerate(items))
        return found

    def put_many(self, model: str, dims: int, hashes: Sequence[str] | Iterable[tuple[str, Any]],
                 vectors: Any = None) -> None:
        """Write one shard: ``vectors[i]`` is the embedding of the text whose hex hash is ``hashes[i]``.

        ``put_many(model, dims, [(hash, vector), ...])`` (pairs, no ``vectors``) is accepted too.
        """
        import numpy as np

        if vectors is None:
            pairs = list(hashes)
            hashes, vectors = [h for h, _ in pairs], [v for _, v in pairs]
        hashes = list(hashes)
        if not hashes:
            return
        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != len(hashes):
            raise ValueError(f"{len(hashes)} hashes but vectors of shape {mat.shape}")
        slug = _slug(model, dims)
        folder = self.root / slug
        if not (folder / "meta.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _atomic(folder / "meta.json",
                    lambda fh: fh.write(json.dumps({"model": model, "dimensions": dims}).encode()))
        self._write_shard(slug, bytes.fromhex("".join(hashes)), mat)

    def _write_shard(self, slug: str, keys: bytes, mat: np.ndarray) -> None:
        """Write ``.npy`` then ``.keys`` (the shard exists once its keys do) and index its rows."""
        import numpy as np

        folder = self.root / slug
        name = uuid.uuid4().hex[:16]
        _atomic(folder / f"{name}.npy", lambda fh: np.save(fh, mat))
        _atomic(folder / f"{name}.keys", lambda fh: fh.write(keys))
        index = self._load_index(slug)
        for row in range(len(keys) // _KEY):
            index[keys[row * _KEY : (row + 1) * _KEY]] = (name, row)

    def shards(self, model: str, dims: int) -> list[Path]:
        """The complete shards of one model (their ``.keys`` files)."""
        folder = self.root / _slug(model, dims)
        return sorted(folder.glob("*.keys")) if folder.is_dir() else []

    def compact(self, model: str, dims: int, *, min_shards: int = COMPACT_SHARDS,
                small_rows: int = SMALL_SHARD_ROWS) -> bool:
        """Merge a model's small shards (< ``small_rows`` rows) once there are more than ``min_shards``.

        Shards are read one at a time and written out as merged shards of about :data:`MERGED_ROWS`
        rows, so memory stays at one merged shard however large the cache (a build with small
        batches leaves thousands of small shards). Only the rows the key index points to are kept
        (a text cached twice keeps its newest vector); unreadable shards are dropped (their texts
        are embedded again). The small shards are removed once every merged shard is written.

        Returns:
            True if shards were merged. Large shards are left alone: merging them would only copy data.
        """
        small = [k for k in self.shards(model, dims) if k.stat().st_size // _KEY < small_rows]
        if len(small) <= min_shards:
            return False
        slug = _slug(model, dims)
        index = self._load_index(slug)
        group: list[tuple[bytes, np.ndarray]] = []
        for keys in small:
            part = _live_rows(keys, index)
            if part is None or not part[0]:
                continue
            if group and (part[1].shape[1] != group[0][1].shape[1] or sum(len(k) for k, _ in group) >= MERGED_ROWS * _KEY):
                self._merge(slug, group)  # full (or a damaged cache mixing sizes: never mixed in one shard)
                group = []
            group.append(part)
        if group:
            self._merge(slug, group)
        for keys in small:
            keys.unlink(missing_ok=True)
            keys.with_suffix(".npy").unlink(missing_ok=True)
        self._index.pop(slug, None)
        return True

    def _merge(self, slug: str, group: list[tuple[bytes, np.ndarray]]) -> None:
        import numpy as np

        self._write_shard(slug, b"".join(k for k, _ in group), np.concatenate([m for _, m in group]))

    def close(self) -> None:
        """Forget the in-memory key index (files stay)."""
        self._index.clear()


def _live_rows(keys_path: Path, index: dict[bytes, tuple[str, int]]) -> tuple[bytes, np.ndarray] | None:
    """The keys and float32 rows of one shard that the key index still points to (``None``: unreadable)."""
    import numpy as np

    try:
        keys = keys_path.read_bytes()
        mat = np.load(keys_path.with_suffix(".npy"), allow_pickle=False)
    except (OSError, ValueError):
        return None
    n, stem = len(keys) // _KEY, keys_path.stem
    if len(keys) % _KEY or mat.ndim != 2 or len(mat) != n:
        return None
    live = [index.get(keys[r * _KEY : (r + 1) * _KEY]) == (stem, r) for r in range(n)]
    if all(live):
        return keys, np.asarray(mat, dtype=np.float32)
    rows = [r for r in range(n) if live[r]]
    return b"".join(keys[r * _KEY : (r + 1) * _KEY] for r in rows), np.asarray(mat[rows], dtype=np.float32)


def text_hash(text: str) -> str:
    """Content hash used as the embedding-cache key (32 hex digits of blake2b)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
