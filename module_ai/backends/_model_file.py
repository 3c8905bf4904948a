"""``model_file``: where an in-process model's weights come from, verified before anything loads them.

A source is data in the config (strict, see :class:`~module_ai.config.ModelFile`):

- ``{"path": "models/x.gguf", "sha256": "..."}``: a file on disk (relative to the config file);
- ``{"parts": [{"distribution": "pkg-part1", "file": "pkg_part1/data/part01.bin"}, ...],
  "sha256": "...", "size": 491400064}``: files shipped inside installed Python distributions,
  found through ``importlib.metadata`` (the packages are never imported, so none of their code
  runs), concatenated in order into the cache and checked against ``sha256``.

Assembled files live in ``$MODULE_AI_CACHE/models`` (default ``~/.cache/module_ai/models``), are
written to a temporary file and renamed into place only after the hash matches, and carry a stamp
(``<file>.verified``: size, mtime and hash) so a later load trusts the file without re-reading it.
A mismatch is a :class:`~module_ai.errors.BackendError` and leaves nothing in the cache.

Example:
    >>> resolve_model_file(ModelFile(path="m.gguf", sha256="..."), "m.gguf")  # doctest: +SKIP
    (PosixPath('m.gguf'), True)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from module_ai.config import ModelFile, ModelPart
from module_ai.errors import BackendError, ConfigError, MissingDependencyError

__all__ = ["ModelFile", "ModelPart", "cache_dir", "resolve_model_file"]

_CHUNK = 1 << 20
"""Bytes read per step while copying and hashing (1 MiB)."""


def cache_dir() -> Path:
    """``$MODULE_AI_CACHE/models``, default ``~/.cache/module_ai/models``."""
    root = os.environ.get("MODULE_AI_CACHE") or str(Path.home() / ".cache" / "module_ai")
    return Path(root).expanduser() / "models"


def resolve_model_file(spec: ModelFile, name: str, *, model: str | None = None,
                       config_path: str | None = None) -> tuple[Path, bool]:
    """The verified local file of ``spec``; returns ``(path, hashed_now)``.

    ``name`` is the file name used in the cache for assembled parts. ``hashed_now`` is false when
    a valid stamp let the file through without reading it.

    Raises:
        ConfigError: the path does not exist.
        MissingDependencyError: a part's distribution is not installed.
        BackendError: a part file is missing, or the size or sha256 does not match.
    """
    where = {"model": model, "path": config_path, "field": "model_file"}
    if spec.path:
        target = _local_path(spec.path, config_path)
        if not target.is_file():
            raise ConfigError(f"model file '{target}' does not exist; fix model_file.path", **where)
        if spec.sha256 is None:
            return target, False
        if _stamp_ok(target, spec.sha256):
            return target, False
        _check_size(target.stat().st_size, spec, str(target), where)
        digest = _hash_file(target)
        if digest != spec.sha256:
            raise BackendError(f"sha256 of '{target}' is {digest}, expected {spec.sha256}; the file is "
                               "corrupt or not the model named in the config: nothing was loaded", **where)
        _write_stamp(target, digest)
        return target, True
    return _assembled(spec, name, where)


def _local_path(value: str, config_path: str | None) -> Path:
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and config_path:
        relative = Path(config_path).parent / candidate
        if relative.exists():
            return relative
    return candidate


def _assembled(spec: ModelFile, name: str, where: dict) -> tuple[Path, bool]:
    target = cache_dir() / f"{spec.sha256[:16]}-{Path(name).name}"
    if target.is_file() and _stamp_ok(target, spec.sha256):
        return target, False
    files = [_part_path(part, spec, where) for part in spec.parts]
    _check_size(sum(f.stat().st_size for f in files), spec, "the parts", where)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for file in files:
                with file.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise BackendError(
                f"the assembled parts have sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                f"reinstall them (pip install --force-reinstall 'module_ai[{spec.extra or 'embedded'}]'): "
                "nothing was loaded", **where)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    _write_stamp(target, spec.sha256)
    return target, True


def _part_path(part: ModelPart, spec: ModelFile, where: dict) -> Path:
    from importlib import metadata

    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the model part package '{part.distribution}' is not installed; run: "
            f"pip install 'module_ai[{spec.extra or 'embedded'}]'", model=where["model"], path=where["path"],
        ) from None
    listed = {str(f).replace("\\", "/") for f in (dist.files or [])}
    path = Path(str(dist.locate_file(part.file)))
    if part.file not in listed or not path.is_file():
        raise BackendError(f"distribution '{part.distribution}' has no file '{part.file}'; reinstall it "
                           f"(pip install --force-reinstall {part.distribution})", **where)
    return path


def _check_size(actual: int, spec: ModelFile, what: str, where: dict) -> None:
    if spec.size is not None and actual != spec.size:
        raise BackendError(f"{what} hold {actual} bytes, expected {spec.size}: nothing was loaded", **where)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_ok(path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    stamp = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        tmp = _stamp_path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp), encoding="utf-8")
        os.replace(tmp, _stamp_path(path))
    except OSError:  # a read-only folder: the file is still verified, only the next load re-hashes it
        pass
