"""``module-ai cost [LOG]``: usage and cost per model from a usage log (JSONL).

Write the log with ``track_usage(log_path=...)`` or by setting ``MODULE_AI_USAGE_LOG`` before the
program runs; every managed call (chat, embeddings, rerank) appends one line.

``module-ai cost --redis [URL]`` reports the shared ledger instead: every call of every process
that ran with ``MODULE_AI_REDIS_URL`` (the default URL), plus the shared budgets.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from module_ai.errors import ModuleAIError

__all__ = ["register", "run_cost"]


def register(subparsers: Any) -> None:
    """Add ``cost`` to the CLI."""
    p = subparsers.add_parser("cost", help="usage and cost report from a usage log")
    p.add_argument("log", nargs="?", default=None,
                   help="usage log (JSONL); default: $MODULE_AI_USAGE_LOG")
    p.add_argument("--model", action="append", metavar="NAME", help="only this model (repeatable)")
    p.add_argument("--since", metavar="DATE", help="only calls at or after this ISO date/time, e.g. 2025-06-01")
    p.add_argument("--budget", type=float, metavar="AMOUNT", help="show spend against this budget")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--redis", nargs="?", const="", default=None, metavar="URL",
                   help="report the shared ledger in Redis (default URL: $MODULE_AI_REDIS_URL)")
    p.set_defaults(func=run_cost)


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ModuleAIError(f"--since {value!r} is not an ISO date such as 2025-06-01 or 2025-06-01T09:30",
                            field="since") from None


def run_cost(args: Any) -> int:
    from module_ai.controls.cost import format_report, summarize
    from module_ai.controls.usage_log import LOG_ENV, read_usage_log

    if args.redis is not None:
        from module_ai.commands._cost_redis import run_cost_redis

        return run_cost_redis(args)
    path = args.log or os.environ.get(LOG_ENV)
    if not path:
        raise ModuleAIError(f"no usage log given; pass its path or set {LOG_ENV} "
                            "(write one with track_usage(log_path=...))")
    if not Path(path).expanduser().is_file():
        raise ModuleAIError("usage log not found; check the path", path=path)
    since = _since(args.since)
    skipped: list[str] = []
    try:
        every = list(read_usage_log(path, skipped))
    except OSError as exc:
        raise ModuleAIError(f"cannot read the usage log: {exc.strerror or exc}", path=path) from exc
    if skipped and not every:
        raise ModuleAIError(f"not a usage log: none of its {len(skipped)} lines is a call record (first: "
                            f"{skipped[0]}); pass the file written by track_usage(log_path=...)", path=path)
    if skipped:
        sys.stderr.write(f"module-ai: warning: {path}: skipped {len(skipped)} unreadable lines ({skipped[0]})\n")
    records = [r for r in every
               if (not args.model or r.model in args.model) and (since is None or r.timestamp >= since)]
    by_model, total = summarize(records)
    stamps = [r.timestamp for r in records if r.timestamp]
    span = (_iso(min(stamps)), _iso(max(stamps))) if stamps else (None, None)
    if args.json:
        print(json.dumps({"log": str(path), "records": len(records), "first": span[0], "last": span[1],
                          "total": total.to_dict(), "by_model": {k: v.to_dict() for k, v in by_model.items()},
                          "budget": args.budget,
                          "remaining": None if args.budget is None else args.budget - total.total_cost},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{path}: {len(records)} calls" + (f" from {span[0]} to {span[1]}" if stamps else ""))
    print(format_report(by_model, total, args.budget))
    return 0


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).isoformat(timespec="seconds")
