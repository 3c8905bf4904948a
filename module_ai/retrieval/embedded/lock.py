"""One writer at a time per knowledge-base folder: an advisory lock on ``kb_dir/.writer.lock``.

The lock is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) held on an
open file, so the kernel releases it when the holder exits for any reason, ``kill -9`` included: a
lock left by a dead writer never blocks anyone. A second writer waits up to ``timeout`` seconds and
then gets a :class:`KnowledgeBaseError` naming the holder's pid. The holder writes its pid and start
time into the file for that message only; the lock itself is the kernel's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from module_ai.errors import KnowledgeBaseError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_FILE", "writer_lock"]

LOCK_FILE = ".writer.lock"
DEFAULT_LOCK_TIMEOUT = 120.0
"""Seconds a writer waits for another writer of the same folder before giving up."""

_POLL = 0.05


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return "another process"
    return f"pid {text[0]}" if text and text[0].isdigit() else "another process"


def _open_lock_file(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot create the writer lock ({exc.strerror or exc}); the knowledge-base "
                                 "folder must be a writable directory", path=str(path)) from exc


@contextlib.contextmanager
def writer_lock(kb_dir: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the writer lock of ``kb_dir`` for the ``with`` block.

    Raises:
        KnowledgeBaseError: another writer held the lock for ``timeout`` seconds, or the folder is
            not writable.
    """
    path = Path(kb_dir) / LOCK_FILE
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + max(0.0, timeout)
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise KnowledgeBaseError(
                    f"another writer ({_holder(path)}) is changing this knowledge base; waited {timeout:g} s. "
                    "Retry when it is done, or pass a larger lock_timeout", path=str(kb_dir))
            time.sleep(_POLL)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
        except (OSError, AttributeError):  # informational only
            pass
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
