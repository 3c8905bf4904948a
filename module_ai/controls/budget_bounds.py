"""Worst-case token bounds for budget reservations (stdlib only).

A budget reserves a call's worst case before it is sent and settles with the server's real usage
after. The token *estimate* (``module_ai.controls.tokens``: 3.5 characters per token) is fine for prose but
low for hex, base64, code, digits and rare CJK characters, so the reservation uses:

- :func:`input_bound`: for plain prose (ASCII letters and spaces, short words) the estimate times
  :data:`BUDGET_MARGIN`; for anything else the UTF-8 byte count plus the per-message framing (a
  byte-level tokenizer never makes more tokens than bytes). Either is capped by the model's window
  (``input_tokens``), which no server accepts more than. A model whose real input count once
  exceeded its prose bound uses the byte bound from then on (:func:`note_real_input`).
- :func:`output_bound`: ``out_tokens`` (or the call's ``max_tokens``) when set; otherwise the room
  left in the window, else :data:`UNKNOWN_OUTPUT_TOKENS`. That bound is also sent as
  ``max_tokens`` (OpenAI-compatible and llama.cpp backends) so the server cannot return more.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from module_ai.controls.tokens import MESSAGE_OVERHEAD_TOKENS, _content_text, estimate_tokens

__all__ = ["BUDGET_MARGIN", "CAPPED_SERVER_TYPES", "UNKNOWN_OUTPUT_TOKENS", "input_bound", "note_real_input",
           "output_bound"]

UNKNOWN_OUTPUT_TOKENS = 4096
"""Worst-case output tokens assumed for budgets when a model has no ``out_tokens``."""

BUDGET_MARGIN = 1.5
"""Reservation = estimate x this, for text that looks like plain prose."""
CAPPED_SERVER_TYPES = ("openai", "llamacpp")
"""Backends that receive the budget's output bound as ``max_tokens`` when no ``out_tokens`` is set."""
_PROSE = re.compile(r"[A-Za-z]{1,20}(?:[\s.,;:!?'\"()-]{1,3}[A-Za-z]{1,20})*[\s.,;:!?'\"()-]{0,3}")
_unreliable_models: set[str] = set()
_lock = threading.Lock()


def _is_prose(text: str) -> bool:
    """Plain ASCII prose: letters in words of at most 20, little punctuation, no digits or symbols."""
    return not text or (text.isascii() and _PROSE.fullmatch(text) is not None)


def _text_bound(text: str, prose_ok: bool) -> int:
    if prose_ok and _is_prose(text):
        return int(estimate_tokens(text) * BUDGET_MARGIN) + 1
    return len(text.encode("utf-8"))


def input_bound(cfg: Any, items: Iterable[Any], *, messages: bool = True) -> int:
    """Worst-case input tokens of chat ``messages`` (or of a batch of texts, ``messages=False``)."""
    prose_ok = cfg.display_name not in _unreliable_models
    total = 0
    for item in items:
        text = _content_text(getattr(item, "content", item))
        total += _text_bound(text, prose_ok) + (MESSAGE_OVERHEAD_TOKENS if messages else 0)
    if messages and cfg.input_tokens:  # one chat request never holds more than the window
        total = min(total, cfg.input_tokens)
    return total


def output_bound(cfg: Any, estimated_input: int, max_output: int | None, unknown: int) -> int:
    """Worst-case output tokens: ``max_output``, else ``unknown`` capped by the window's room (from
    the estimate, so that the ``max_tokens`` sent with it keeps the request valid)."""
    if max_output is not None:
        return max_output
    if cfg.input_tokens:
        return max(1, min(unknown, cfg.input_tokens - estimated_input))
    return unknown


def note_real_input(cfg: Any, reserved_input: int, real_input: int) -> None:
    """After a call: if the server counted more input than reserved, stop trusting the prose bound."""
    if real_input > reserved_input:
        with _lock:
            _unreliable_models.add(cfg.display_name)
