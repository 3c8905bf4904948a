"""Budget reservations of ``track_usage(max_cost=...)``: in-process, or shared through Redis.

Before a call, every open tracker with ``max_cost`` reserves the call's worst case (input bound and
output bound from :mod:`module_ai.controls.budget_bounds`) and refuses the call with
:class:`~module_ai.errors.BudgetExceededError` when ``spent + in flight + worst > max_cost``. After
the call its record settles the real cost (``UsageTracker.add``) and the reservation is dropped, so
a budget is never overspent while the server's usage stays within the bounds.

Currencies are never added together against one ``max_cost``: a tracker with ``currency="USD"``
counts only USD models against its budget (others are tracked but not limited); without
``currency`` the first model that reserves fixes it and a model priced in another currency is
refused with a ``BudgetExceededError`` saying so. A shared budget keeps its currency in Redis.
"""

from __future__ import annotations

from typing import Any

from module_ai.controls.budget_bounds import UNKNOWN_OUTPUT_TOKENS
from module_ai.errors import BudgetExceededError

__all__ = ["Reservation", "reserve_budget", "settle_shared"]

_LOCAL = "local"
_SHARED = "shared"


def _over(tracker: Any, worst: float, cfg: Any, input_tokens: int, out: int, spent: float,
          reserved: float) -> BudgetExceededError:
    cur = cfg.currency
    where = f" (shared budget '{tracker.budget}')" if tracker.budget else ""
    return BudgetExceededError(
        f"this call could cost up to {worst:.6g} {cur} ({input_tokens} input + {out} output tokens, worst "
        f"case); spent {spent:.6g} {cur}" + (f" + {reserved:.6g} in flight" if reserved else "")
        + f" of max_cost {tracker.max_cost:.6g} {cur}{where}. Raise max_cost or make the call smaller",
        model=cfg.display_name, field="max_cost")


def _mixed(tracker: Any, cfg: Any, budget_currency: str) -> BudgetExceededError:
    return BudgetExceededError(
        f"this model is priced in {cfg.currency} but the budget counts {budget_currency}; amounts in "
        f"different currencies are never added against one max_cost. Use one track_usage(max_cost=..., "
        f"currency='{cfg.currency}') per currency (they nest)", model=cfg.display_name, field="currency")


def _counts(tracker: Any, cfg: Any) -> bool:
    """Whether this call counts against the tracker's budget (raises on an implicit mix)."""
    if tracker.currency is not None:
        return cfg.currency == tracker.currency
    with tracker._lock:
        if tracker._currency is None:
            tracker._currency = cfg.currency
        elif tracker._currency != cfg.currency:
            raise _mixed(tracker, cfg, tracker._currency)
    return True


def _reserve_local(tracker: Any, worst: float, cfg: Any, input_tokens: int, out: int) -> str:
    with tracker._lock:
        spent = tracker._spent.get(cfg.currency, 0.0)
        if spent + tracker.reserved + worst > tracker.max_cost:
            raise _over(tracker, worst, cfg, input_tokens, out, spent, tracker.reserved)
        tracker.reserved += worst
    return _LOCAL


def _reserve(tracker: Any, worst: float, cfg: Any, input_tokens: int, out: int, token: str) -> str | None:
    if not _counts(tracker, cfg):
        return None
    shared = tracker._shared
    if shared is None:
        return _reserve_local(tracker, worst, cfg, input_tokens, out)
    got = shared.state.run(lambda: shared.reserve(token, worst, tracker.max_cost, cfg.currency), lambda: None,
                           f"budget '{tracker.budget}'")
    if got is None:  # failing open: this process's own budget
        return _reserve_local(tracker, worst, cfg, input_tokens, out)
    status, spent, reserved = got
    if status == "currency":
        raise _mixed(tracker, cfg, spent)
    if status == "over":
        raise _over(tracker, worst, cfg, input_tokens, out, float(spent), reserved)
    return _SHARED


def _release(tracker: Any, worst: float, mode: str, token: str) -> None:
    if mode == _LOCAL:
        with tracker._lock:
            tracker.reserved = max(0.0, tracker.reserved - worst)
        return
    with tracker._lock:
        if token in tracker._settled:  # the record already settled it (one round trip saved)
            tracker._settled.discard(token)
            return
    shared = tracker._shared
    shared.state.quiet(lambda: shared.unreserve(token), f"budget '{tracker.budget}'")


class Reservation:
    """What one call holds: ``(tracker, worst, mode)`` per budget, and the input bound it used."""

    __slots__ = ("input_tokens", "items", "token")

    def __init__(self, items: list[tuple[Any, float, str]], input_tokens: int, token: str) -> None:
        self.items, self.input_tokens, self.token = items, input_tokens, token

    def release(self) -> None:
        items, self.items = self.items, []
        for tracker, worst, mode in items:
            _release(tracker, worst, mode, self.token)


def reserve_budget(trackers: Any, cfg: Any, input_tokens: int, max_output: int | None, *,
                   token: str = "") -> Reservation | None:
    """Reserve a call's worst case with every tracker in ``trackers`` that has ``max_cost``.

    ``input_tokens`` is the worst-case input bound; ``max_output`` ``None`` means unknown
    (:data:`~module_ai.controls.budget_bounds.UNKNOWN_OUTPUT_TOKENS`). ``token`` is the call id its
    record carries. Returns a reservation to ``release()`` once the call's record was emitted, or ``None``.

    Raises:
        BudgetExceededError: the call could cross a budget (or mixes currencies); nothing is reserved.
    """
    trackers = [t for t in trackers if t.max_cost is not None]
    if not trackers:
        return None
    out = UNKNOWN_OUTPUT_TOKENS if max_output is None else max_output
    worst = (input_tokens * cfg.pay_in + out * cfg.pay_out) / cfg.price_unit
    done = Reservation([], input_tokens, token)
    try:
        for tracker in trackers:
            mode = _reserve(tracker, worst, cfg, input_tokens, out, token)
            if mode is not None:
                done.items.append((tracker, worst, mode))
    except BaseException:
        done.release()
        raise
    return done


def settle_shared(tracker: Any, record: Any) -> None:
    """Add a record's real cost to the tracker's shared budget (and drop the call's reservation)."""
    shared = tracker._shared
    if tracker.currency is not None and record.currency != tracker.currency:
        return
    token = record.extra.get("call_id") or ""
    shared.state.quiet(lambda: shared.settle(token, record.cost, record.currency), f"budget '{tracker.budget}'")
    if token and tracker.max_cost is not None:
        with tracker._lock:
            tracker._settled.add(token)
            if len(tracker._settled) > 10_000:  # calls settled without a shared reservation
                tracker._settled.pop()
