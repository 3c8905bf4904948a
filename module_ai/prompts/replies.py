"""Reading model replies: the text without ``<think>`` reasoning, and yes/no judgements.

One parser for every place that asks a model a yes/no question (the RAG agent's graders, the
groundedness LLM judge, the pointwise LLM reranker's bare yes/no answers).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_judgement", "reply_text"]

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_JSON_KEY = re.compile(r"[\"']\w+[\"']\s*:")
_LABEL = re.compile(
    r"^(答案|回答|判断|结论|结果|评分|answer|judge?ment|verdict|grade|score|result|relevan(t|ce)|supported)"
    r"\s*[:：=]\s*", re.IGNORECASE)
_STRIP = " \t\r\n\"'“”‘’`*#>-:：[]【】()（）{}"
_LEAD_NO = re.compile(r"^(不相关|无关|不是|否|没有依据|无依据|不支持|不(?=[\s，,。.!！]|$)|"
                      r"(no|not relevant|irrelevant|not supported|unsupported|false)\b)", re.IGNORECASE)
_LEAD_YES = re.compile(r"^(相关|是|有依据|支持|对|(yes|relevant|supported|true)\b)", re.IGNORECASE)
_WORDS = re.compile(r"不相关|不相干|无关|没有依据|无依据|不支持|有依据|相关|"
                    r"\b(?:not relevant|irrelevant|not supported|unsupported|relevant|supported|yes|no)\b", re.IGNORECASE)
_NEGATIVE = {"不相关", "不相干", "无关", "没有依据", "无依据", "不支持", "not relevant", "irrelevant",
             "not supported", "unsupported", "no"}


_BARE = {"是": True, "相关": True, "yes": True, "relevant": True,
         "否": False, "不是": False, "不相关": False, "无关": False, "no": False, "not relevant": False,
         "irrelevant": False}
"""The whole-reply verdict words accepted with ``bare=True``."""


def parse_judgement(text: str, *, bare: bool = False) -> bool | None:
    """Read a yes/no judgement from free model output; ``None`` when it cannot be told.

    The first word decides (是/否/相关/不相关/yes/no/relevant/..., after ``<think>`` blocks, JSON keys
    and labels such as ``答案：`` are removed); otherwise every judgement word in the text is collected
    and must agree. Mixed or missing words give ``None``: the caller applies its documented default.
    With ``bare=True`` only a reply that is a single verdict word counts (``"是"``, ``"no."``).

    Example:
        >>> parse_judgement("否。文档讨论的是别的话题"), parse_judgement('{"score": "yes"}')
        (False, True)
        >>> parse_judgement("这是无关的"), parse_judgement("xq#z") is None
        (False, True)
        >>> parse_judgement("no idea", bare=True) is None, parse_judgement("是。", bare=True)
        (True, True)
    """
    if bare:  # the reply must be one verdict word, nothing else (punctuation aside)
        return _BARE.get(re.sub(r"[\s\W_]+$|^[\s\W_]+", "", reply_text(text).lower()))
    cleaned = _JSON_KEY.sub(" ", reply_text(text)).strip(_STRIP)
    cleaned = _LABEL.sub("", cleaned).strip(_STRIP)
    if _LEAD_NO.match(cleaned):
        return False
    if _LEAD_YES.match(cleaned):
        return True
    found = {m.group(0).lower() not in _NEGATIVE for m in _WORDS.finditer(cleaned)}
    return found.pop() if len(found) == 1 else None


def reply_text(content: Any) -> str:
    """Text of a model reply (message or content), without ``<think>...</think>`` reasoning."""
    content = getattr(content, "content", content)
    if isinstance(content, list):
        content = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                          if isinstance(p, (str, dict)))
    text = str(content or "")
    if "</think>" in text and "<think>" not in text:
        text = text.rsplit("</think>", 1)[1]
    return _THINK.sub("", text).strip()
