"""The usage log (JSONL, one call per line) and plain-text usage tables.

Shared by :mod:`module_ai.usage` (``track_usage(log_path=...)``, ``$MODULE_AI_USAGE_LOG``,
``UsageTracker.report()``) and ``module-ai cost``. Dependency-free (stdlib only).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from module_ai._events import CallRecord, add_listener

__all__ = ["LOG_ENV", "UsageLog", "ensure_env_log", "format_report", "read_usage_log", "summarize"]

LOG_ENV = "MODULE_AI_USAGE_LOG"
"""Environment variable naming a JSONL file that receives every call record of the process."""

_COLUMNS = ("model", "calls", "errors", "input", "output", "reasoning", "cost", "avg s", "estimated")


def _row(name: str, stats: Any) -> list[str]:
    cost = f"{stats.total_cost:.6f}".rstrip("0").rstrip(".") or "0"
    return [name, str(stats.calls), str(stats.errors), str(stats.input_tokens), str(stats.output_tokens),
            str(stats.reasoning_tokens), f"{cost} {stats.currency}".strip(), f"{stats.mean_latency_s:.3f}",
            str(stats.estimated_calls)]


def format_report(by_model: dict[str, Any], total: Any, max_cost: float | None = None) -> str:
    """Per-model rows, a total row, and "budget: spent X of Y (Z%)" when a budget is set.

    Example:
        >>> from module_ai.usage import UsageStats
        >>> print(format_report({}, UsageStats()).splitlines()[-1].split()[:2])
        ['total', '0']
    """
    rows = [_row(name, by_model[name]) for name in sorted(by_model)]
    rows.append(_row("total", total))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(_COLUMNS), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if max_cost is not None:
        share = f" ({100 * total.total_cost / max_cost:.1f}%)" if max_cost else ""
        left = max_cost - total.total_cost
        out.append(f"budget: spent {total.total_cost:.6g} of {max_cost:.6g} {total.currency}{share}, "
                   f"{left:.6g} left")
    if total.estimated_calls:
        out.append(f"note: {total.estimated_calls} call(s) had no usage from the server; their tokens "
                   "are estimated from text")
    return "\n".join(out)


def summarize(records) -> tuple[dict[str, Any], Any]:
    """``(by_model, total)`` UsageStats from an iterable of CallRecords."""
    from module_ai.usage import UsageStats

    by_model: dict[str, UsageStats] = {}
    total = UsageStats()
    for record in records:
        by_model.setdefault(record.model, UsageStats()).add(record)
        total.add(record)
    return by_model, total


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
