"""The usage log: JSONL, one call record per line.

Written by :mod:`module_ai.controls.usage` (``track_usage(log_path=...)``, ``$MODULE_AI_USAGE_LOG``)
and read by ``module-ai cost``. Dependency-free (stdlib only).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from module_ai.controls.events import CallRecord, add_listener

__all__ = ["LOG_ENV", "UsageLog", "ensure_env_log", "read_usage_log"]

LOG_ENV = "MODULE_AI_USAGE_LOG"
"""Environment variable naming a JSONL file that receives every call record of the process."""

class UsageLog:
    """Appends every record it receives to a JSONL file (one line per call, thread-safe)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()

    def __call__(self, record: CallRecord) -> None:
        line = json.dumps(record.to_dict(), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)


_env_log: UsageLog | None = None
_env_checked = False
_env_lock = threading.Lock()


def ensure_env_log() -> None:
    """Start logging every record to ``$MODULE_AI_USAGE_LOG`` if it is set (checked once)."""
    global _env_checked, _env_log
    if _env_checked:
        return
    with _env_lock:
        if _env_checked:
            return
        path = os.environ.get(LOG_ENV)
        if path:
            _env_log = UsageLog(path)
            add_listener(_env_log)
        _env_checked = True
        from module_ai.controls.shared_state import on_shared

        on_shared(_start_shared_ledger)  # now if MODULE_AI_REDIS_URL is set, or when configure_shared() runs


_ledger_on = False
_ledger_lock = threading.Lock()


def _start_shared_ledger() -> None:
    """Add every record to the shared ledger in Redis (``module-ai cost --redis``), once."""
    global _ledger_on
    with _ledger_lock:
        if _ledger_on:
            return
        from module_ai.controls.redis_budget import ledger_listener

        add_listener(ledger_listener)
        _ledger_on = True


def read_usage_log(path: str | os.PathLike) -> Iterable[CallRecord]:
    """Yield the records of a JSONL usage log (unknown keys are kept in ``extra``; bad lines skipped)."""
    known = {f.name for f in fields(CallRecord)}
    with Path(path).expanduser().open(encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if not isinstance(data, dict) or "model" not in data:
                continue
            extra = {k: v for k, v in data.items() if k not in known}
            record = CallRecord(**{k: v for k, v in data.items() if k in known})
            record.extra = {**(record.extra or {}), **extra}
            yield record
