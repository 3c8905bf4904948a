"""Token counting without network access: a documented approximation with a safety margin.

No provider tokenizer ships offline with this package, so counts are estimated from characters:
each CJK character (Han, kana, hangul, full-width punctuation) counts as one token, every other run of
characters as ``ceil(len / 3.5)`` tokens, plus 4 tokens of framing per chat message. Qwen, DeepSeek
and Llama tokenizers give 0.6-1.0 tokens per Chinese character and about 4 characters per English
token, so this errs high (the safe side for context-window checks and budgets).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "estimate_message_tokens", "estimate_tokens"]

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens added per chat message for role markers and separators."""

_CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` (errs high).

    Example:
        >>> estimate_tokens("你好")
        2
        >>> estimate_tokens("hello world")
        4
    """
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    other = len(text) - cjk
    return cjk + math.ceil(other / 3.5)


def estimate_message_tokens(messages: Iterable[Any]) -> int:
    """Estimate tokens of LangChain messages (or strings), including per-message framing."""
    total = 0
    for message in messages:
        content = getattr(message, "content", message)
        total += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(_content_text(content))
    return total


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append("x" * 3000)  # an image/audio part: roughly 1k tokens, counted high
        return " ".join(parts)
    return str(content)
