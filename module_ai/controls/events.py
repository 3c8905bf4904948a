"""Call records: what every managed model call emits, and who listens (usage trackers, logs).

Kept dependency-free so that backends can emit without importing the tracker machinery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CallRecord", "add_listener", "emit", "remove_listener"]


@dataclass
class CallRecord:
    """One finished (or failed) model call.

    Attributes:
        model: registry name of the model.
        kind: ``chat``, ``embedding`` or ``rerank``.
        input_tokens / output_tokens / reasoning_tokens: token counts of the call.
        estimated: True when the server returned no usage and the counts were estimated from text.
        cost: cost in ``currency`` from ``pay_in``/``pay_out``/``price_unit``.
        latency_s: wall time of the call; ``ttft_s`` time to first chunk for streams.
        attempts: HTTP attempts made (1 + retries).
        error: exception class name and message when the call failed.
    """

    model: str
    kind: str
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cost: float = 0.0
    currency: str = "CNY"
    latency_s: float = 0.0
    ttft_s: float | None = None
    attempts: int = 1
    error: str | None = None
    timestamp: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for logs (JSONL)."""
        return asdict(self)


_listeners: list[Callable[[CallRecord], None]] = []
_lock = threading.Lock()


def add_listener(listener: Callable[[CallRecord], None]) -> None:
    """Call ``listener(record)`` for every record emitted from now on (any thread)."""
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Callable[[CallRecord], None]) -> None:
    """Stop calling ``listener``; unknown listeners are ignored."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def emit(record: CallRecord) -> None:
    """Deliver ``record`` to every listener; a failing listener never breaks the call."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(record)
        except Exception:  # a broken listener must not fail a model call
            import logging

            logging.getLogger("module_ai").exception("usage listener failed")
