"""What calls cost: the price rule, per-model totals (:class:`UsageStats`) and the usage table.

Cost is in the model's ``currency``: ``(input * pay_in + output * pay_out) / price_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from module_ai.controls.events import CallRecord

__all__ = ["UsageStats", "call_cost", "format_report", "summarize"]


def call_cost(cfg: Any, input_tokens: int, output_tokens: int) -> float:
    """Cost of one call in ``cfg.currency``: tokens times ``pay_in``/``pay_out`` per ``price_unit``."""
    return (input_tokens * cfg.pay_in + output_tokens * cfg.pay_out) / cfg.price_unit


@dataclass
class UsageStats:
    """Totals for one model (or all): calls, tokens, cost, latency."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_cost: float = 0.0
    latency_s: float = 0.0
    estimated_calls: int = 0
    currency: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def mean_latency_s(self) -> float:
        return self.latency_s / self.calls if self.calls else 0.0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.errors += record.error is not None
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.reasoning_tokens += record.reasoning_tokens
        self.total_cost += record.cost
        self.latency_s += record.latency_s
        self.estimated_calls += bool(record.estimated)
        if record.currency and record.currency not in self.currency.split("+"):
            self.currency = f"{self.currency}+{record.currency}" if self.currency else record.currency

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["mean_latency_s"] = self.mean_latency_s
        return data


_COLUMNS = ("model", "calls", "errors", "input", "output", "reasoning", "cost", "avg s", "estimated")


def _row(name: str, stats: Any) -> list[str]:
    cost = f"{stats.total_cost:.6f}".rstrip("0").rstrip(".") or "0"
    return [name, str(stats.calls), str(stats.errors), str(stats.input_tokens), str(stats.output_tokens),
            str(stats.reasoning_tokens), f"{cost} {stats.currency}".strip(), f"{stats.mean_latency_s:.3f}",
            str(stats.estimated_calls)]


def format_report(by_model: dict[str, Any], total: Any, max_cost: float | None = None) -> str:
    """Per-model rows, a total row, and "budget: spent X of Y (Z%)" when a budget is set.

    Example:
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
    by_model: dict[str, UsageStats] = {}
    total = UsageStats()
    for record in records:
        by_model.setdefault(record.model, UsageStats()).add(record)
        total.add(record)
    return by_model, total
