"""``module-ai cost --redis [URL]``: the shared ledger and budgets kept in Redis."""

from __future__ import annotations

import json
import os
from typing import Any

from module_ai.errors import ModuleAIError, SharedStateError

__all__ = ["run_cost_redis"]


def _read(url: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from module_ai.controls.redis_budget import read_ledger
    from module_ai.controls.shared_state import _settings, mask_url
    from module_ai.errors import require

    settings = _settings(url, "closed", 30, source="--redis")
    redis = require("redis", "shared")
    client = redis.Redis.from_url(settings.url, socket_connect_timeout=2.0, socket_timeout=5.0,
                                  decode_responses=True)
    try:
        return read_ledger(client)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise SharedStateError(f"cannot read the shared ledger from Redis at {mask_url(url)} "
                               f"({type(exc).__name__}); is redis-server running?", field="redis") from exc
    finally:
        client.close()


def run_cost_redis(args: Any) -> int:
    from module_ai.controls.cost import UsageStats, format_report
    from module_ai.controls.shared_state import REDIS_URL_ENV, mask_url

    url = args.redis or os.environ.get(REDIS_URL_ENV, "")
    if not url:
        raise ModuleAIError(f"--redis needs a URL or {REDIS_URL_ENV} (e.g. redis://localhost:6379/0)",
                            field="redis")
    by_model, budgets = _read(url)
    if args.model:
        by_model = {k: v for k, v in by_model.items() if k in args.model}
    total = UsageStats()
    for stats in by_model.values():
        total = _merge(total, stats)
    if args.json:
        print(json.dumps({"redis": mask_url(url), "total": total.to_dict(),
                          "by_model": {k: v.to_dict() for k, v in by_model.items()}, "budgets": budgets,
                          "budget": args.budget,
                          "remaining": None if args.budget is None else args.budget - total.total_cost},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{mask_url(url)}: {total.calls} calls in the shared ledger")
    print(format_report(by_model, total, args.budget))
    for name, status in budgets.items():
        print(f"budget {name}: spent {status['spent']:.6g} {status['currency']} in {status['calls']} calls, "
              f"{status['in_flight']} in flight ({status['reserved']:.6g} reserved)")
    return 0


def _merge(total: Any, stats: Any) -> Any:
    from dataclasses import fields

    for f in fields(stats):
        if f.name == "currency":
            if stats.currency and stats.currency not in total.currency.split("+"):
                total.currency = f"{total.currency}+{stats.currency}" if total.currency else stats.currency
        else:
            setattr(total, f.name, getattr(total, f.name) + getattr(stats, f.name))
    return total
