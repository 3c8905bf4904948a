"""The usage log: JSONL, one call record per line.

Written by :mod:`module_ai.controls.usage` (``track_usage(log_path=...)``, ``$MODULE_AI_USAGE_LOG``)
and read by ``module-ai cost``. Dependency-free (stdlib only).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

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


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "kind": (str,), "input_tokens": (int,), "output_tokens": (int,), "reasoning_tokens": (int,),
    "estimated": (bool,), "cost": _NUMBER, "currency": (str,), "latency_s": _NUMBER, "ttft_s": (*_NUMBER, type(None)),
    "attempts": (int,), "error": (str, type(None)), "timestamp": _NUMBER, "extra": (dict, type(None)),
}


def _problem(data: Any) -> str | None:
    """Why a parsed log line is not a usable CallRecord (``None`` if it is)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if "model" not in data:
        return "no 'model' field"
    for key, types in _FIELD_TYPES.items():
        value = data.get(key)
        if key not in data:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"field {key!r} is {type(value).__name__}" if value is not None else f"field {key!r} is null"
        if isinstance(value, float) and not math.isfinite(value):
            return f"field {key!r} is not finite"
    return None


def read_usage_log(path: str | os.PathLike, skipped: list[str] | None = None) -> Iterable[CallRecord]:
    """Yield the records of a JSONL usage log (unknown keys are kept in ``extra``).

    Lines that are not UTF-8 JSON objects with well-typed fields (a truncated last line, a null or a
    string where a number belongs) are skipped; ``skipped`` (if given) receives ``"line N: why"``.
    """
    known = {f.name for f in fields(CallRecord)}
    with Path(path).expanduser().open(encoding="utf-8", errors="replace") as handle:  # binary lines: skipped
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (ValueError, RecursionError):
                problem: str | None = "not JSON"
            else:
                problem = _problem(data)
            if problem is not None:
                if skipped is not None:
                    skipped.append(f"line {number}: {problem}")
                continue
            extra = {k: v for k, v in data.items() if k not in known}
            record = CallRecord(**{k: v for k, v in data.items() if k in known})
            record.extra = {**(record.extra or {}), **extra}
            yield record
