"""Integrity of a knowledge-base folder: manifest shape, per-file checksums, safe reading.

Every generation's files are listed in the manifest under ``files`` as ``{relative path: "size:blake2b"}``
(written by :func:`module_ai.retrieval.embedded.store.write_generation`). :func:`verify_generation` checks them
before a generation is read or built upon, so a truncated, edited or replaced file is a
:class:`KnowledgeBaseError` naming that file, never a traceback or a silently wrong answer.
Manifests written before checksums existed are read with shape checks only.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from module_ai.errors import KnowledgeBaseError

__all__ = ["check_manifest", "digest_files", "reading", "seal_manifest", "verify_generation"]

SEAL = "manifest_checksum"
"""Manifest field holding the blake2b of the manifest's other fields (canonical JSON)."""


def _seal_of(manifest: dict[str, Any]) -> str:
    import json

    body = {k: v for k, v in manifest.items() if k != SEAL}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own checksum added (written on every manifest write)."""
    return {**{k: v for k, v in manifest.items() if k != SEAL}, SEAL: _seal_of(manifest)}

_GENERATION = re.compile(r"^gen-\d{6}$")
_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
            size += len(block)
    return f"{size}:{h.hexdigest()}"


def digest_files(gen: Path) -> dict[str, str]:
    """``{relative path: "size:hash"}`` of every regular file under ``gen``."""
    return {p.relative_to(gen).as_posix(): _file_digest(p) for p in sorted(gen.rglob("*")) if p.is_file()}


def verify_generation(gen: Path, manifest: dict[str, Any]) -> None:
    """Check the files of ``gen`` against the manifest's checksums (no-op for older manifests).

    Raises:
        KnowledgeBaseError: a listed file is missing, not a regular file, or changed.
    """
    files = manifest.get("files")
    if files is None:
        return
    for name, expected in files.items():
        path = gen / name
        if path.is_symlink() or not path.is_file():
            raise KnowledgeBaseError(f"{gen.name}/{name} is missing or not a regular file; rebuild the index",
                                     path=str(path))
        try:
            actual = _file_digest(path)
        except OSError as exc:
            raise KnowledgeBaseError(f"{gen.name}/{name} is unreadable ({exc}); rebuild the index",
                                     path=str(path)) from exc
        if actual != expected:
            raise KnowledgeBaseError(f"{gen.name}/{name} is damaged (its size or checksum differs from the "
                                     "manifest); rebuild the index", path=str(path))


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn any failure while parsing ``path`` into a KnowledgeBaseError naming it."""
    try:
        yield
    except KnowledgeBaseError:
        raise
    except Exception as exc:
        raise KnowledgeBaseError(f"{path.parent.name}/{path.name} is damaged ({type(exc).__name__}: {exc}); "
                                 "rebuild the index", path=str(path)) from exc


_TYPES: dict[str, tuple[type, ...]] = {
    "embedding_model": (str,), "metric": (str,), "tokenizer": (dict,), "chunking": (dict,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "dimensions": (int, type(None)), "requested_dimensions": (int, type(None)), "retrieval": (dict, type(None)),
    "vector_backend": (str, type(None)), "generation": (str, type(None)), "files": (dict, type(None)),
    "counts": (dict, type(None)),
}


def _bad(path: Path, what: str) -> KnowledgeBaseError:
    return KnowledgeBaseError(f"manifest.json {what}; rebuild the index", path=str(path))


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Check the shape of a parsed manifest (types of the fields the index needs); return it."""
    from module_ai.retrieval.embedded.index import METRICS

    if not isinstance(manifest, dict):
        raise _bad(path, f"is a JSON {type(manifest).__name__}, not an object")
    if SEAL in manifest and manifest[SEAL] != _seal_of(manifest):
        raise _bad(path, "was changed after it was written (its checksum differs)")
    for key, types in {**_TYPES, **_OPTIONAL}.items():
        if key not in manifest and key in _TYPES:
            raise _bad(path, f"has no {key!r}")
        value = manifest.get(key)
        if key in manifest and (not isinstance(value, types) or isinstance(value, bool)):
            raise _bad(path, f"field {key!r} has the wrong type ({type(value).__name__})")
    if manifest["metric"] not in METRICS:
        raise _bad(path, f"field 'metric' is {manifest['metric']!r}, not one of {METRICS}")
    gen = manifest.get("generation")
    if gen is not None and not _GENERATION.match(gen):
        raise _bad(path, f"field 'generation' is {gen!r}, not gen-NNNNNN")
    chunking = manifest["chunking"]
    if not (isinstance(chunking.get("chunk_size"), int) and isinstance(chunking.get("chunk_overlap"), int)
            and chunking.get("unit") in ("chars", "tokens")):
        raise _bad(path, "field 'chunking' needs integer chunk_size, chunk_overlap and unit chars|tokens")
    files = manifest.get("files") or {}
    if not all(isinstance(k, str) and isinstance(v, str) and ".." not in k.split("/") for k, v in files.items()):
        raise _bad(path, "field 'files' is not a map of file names to checksums")
    return manifest
