"""Load test of one chat model at several concurrency levels, and a ``max_concurrency`` to use.

Each level sends ``requests`` streamed calls, ``concurrency`` at a time, and measures time to first
token (first chunk with text), latency p50/p95, output tokens per second (all requests' output
tokens / wall time), requests per second, error rate and cost per 1,000 requests. Retries and
fallbacks are off so errors show; the model's ``rpm``/``tpm`` limits stay on (the bench never sends
faster than the provider allows); its concurrency cap is set to each level in turn and restored.

Recommendation (:func:`recommend`): the smallest tested level whose throughput reaches
:data:`GOOD_ENOUGH` of the best level's, among levels with an error rate <= :data:`MAX_ERROR_RATE`;
beyond that point more concurrency only adds queueing latency (or 429s).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from module_ai.controls.limits import limiter_for

__all__ = ["GOOD_ENOUGH", "MAX_ERROR_RATE", "LevelResult", "bench_model", "format_bench", "recommend"]

GOOD_ENOUGH = 0.9
"""Share of the best throughput a level must reach to be recommended."""
MAX_ERROR_RATE = 0.01
"""Levels with more errors than this are not recommended."""
DEFAULT_PROMPT = "用三句话介绍一下长城。"


@dataclass
class LevelResult:
    """What one concurrency level measured (seconds, tokens, the model's currency)."""

    concurrency: int
    requests: int
    errors: int
    error_rate: float
    wall_s: float
    requests_per_s: float
    ttft_p50_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    output_tokens_per_s: float
    cost_per_1k: float
    currency: str
    first_error: str | None = None


def _one(llm: Any, prompt: str) -> dict[str, Any]:
    start = time.perf_counter()
    ttft, whole = None, None
    try:
        for chunk in llm.stream(prompt):
            if ttft is None and chunk.content:
                ttft = time.perf_counter() - start
            whole = chunk if whole is None else whole + chunk
    except Exception as exc:  # noqa: BLE001 - the bench counts every failure as an error
        return {"error": f"{type(exc).__name__}: {exc}"}
    usage = (whole.usage_metadata or {}) if whole is not None else {}
    meta = whole.response_metadata if whole is not None else {}
    return {"latency": time.perf_counter() - start, "ttft": ttft, "output": usage.get("output_tokens", 0),
            "cost": float(meta.get("cost") or 0.0), "currency": meta.get("currency", "")}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _level(llm: Any, concurrency: int, requests: int, prompt: str, tick: Callable[[], None]) -> LevelResult:
    def task(_: int) -> dict[str, Any]:
        result = _one(llm, prompt)
        tick()
        return result

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(task, range(requests)))
    wall = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    latencies = [r["latency"] for r in ok]
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    return LevelResult(
        concurrency=concurrency, requests=requests, errors=len(errors), error_rate=len(errors) / requests,
        wall_s=wall, requests_per_s=len(ok) / wall if wall else 0.0,
        ttft_p50_s=_percentile(ttfts, 50), latency_p50_s=_percentile(latencies, 50),
        latency_p95_s=_percentile(latencies, 95),
        output_tokens_per_s=sum(r["output"] for r in ok) / wall if wall else 0.0,
        cost_per_1k=1000 * statistics.fmean([r["cost"] for r in ok]) if ok else 0.0,
        currency=next((r["currency"] for r in ok if r["currency"]), ""),
        first_error=errors[0][:300] if errors else None,
    )


def recommend(levels: list[LevelResult]) -> int | None:
    """The smallest level within :data:`GOOD_ENOUGH` of the best throughput with few errors.

    Example:
        >>> mk = lambda c, rps, err=0: LevelResult(c, 10, err, err / 10, 1, rps, None, None, None, 0, 0, "")
        >>> recommend([mk(1, 10), mk(4, 37), mk(16, 39), mk(32, 45, err=3)])
        4
    """
    usable = [lv for lv in levels if lv.error_rate <= MAX_ERROR_RATE and lv.requests_per_s > 0]
    if not usable:
        return None  # every level failed too often: fix the errors first
    best = max(lv.requests_per_s for lv in usable)
    return min(lv.concurrency for lv in usable if lv.requests_per_s >= GOOD_ENOUGH * best)


def bench_model(registry: Any, name: str, concurrency: list[int], requests: int, *,
                prompt: str = DEFAULT_PROMPT, max_tokens: int | None = None, progress: bool = True) -> dict:
    """Run the load test; returns ``{"model", "levels": [LevelResult as dict], "recommended", ...}``."""
    from tqdm.auto import tqdm

    overrides: dict[str, Any] = {"max_retries": 0, "fallbacks": []}
    if max_tokens:
        overrides["out_tokens"] = max_tokens
    llm = registry.chat(name, **overrides)
    cfg = llm.module_ai_config
    limiter = limiter_for(cfg)
    bar = tqdm(total=len(concurrency) * requests, desc=f"bench {name}", unit="req", disable=not progress,
               leave=False)
    levels = []
    try:
        for level in concurrency:
            limiter.configure(max_concurrency=level, adaptive=False)
            bar.set_postfix_str(f"concurrency {level}")
            levels.append(_level(llm, level, requests, prompt, lambda: bar.update(1)))
    finally:
        bar.close()
        limiter.apply(registry.config(name))
    return {"model": name, "requests_per_level": requests, "prompt_chars": len(prompt),
            "levels": [asdict(lv) for lv in levels], "recommended_max_concurrency": recommend(levels),
            "rule": f"smallest level reaching {GOOD_ENOUGH:.0%} of the best throughput with error rate "
                    f"<= {MAX_ERROR_RATE:.0%}"}


def format_bench(report: dict) -> str:
    """The bench report as a plain-text table plus the recommendation."""
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    head = ("conc", "req/s", "ttft p50 ms", "p50 ms", "p95 ms", "out tok/s", "errors", "cost/1k req")
    rows = [(str(lv["concurrency"]), f"{lv['requests_per_s']:.2f}", ms(lv["ttft_p50_s"]), ms(lv["latency_p50_s"]),
             ms(lv["latency_p95_s"]), f"{lv['output_tokens_per_s']:.1f}", f"{lv['error_rate']:.1%}",
             f"{lv['cost_per_1k']:.4g} {lv['currency']}".strip()) for lv in report["levels"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for lv in report["levels"]:
        if lv["first_error"]:
            lines.append(f"concurrency {lv['concurrency']}: first error: {lv['first_error']}")
    best = report["recommended_max_concurrency"]
    lines.append(f"recommended max_concurrency: {best} ({report['rule']})" if best else
                 f"no recommendation: every level had more than {MAX_ERROR_RATE:.0%} errors")
    return "\n".join(lines)
