"""Shared pieces of the graphs: prompt templates, the model's window, judgement parsing, text cleanup."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from module_ai.errors import ConfigError, require

__all__ = ["LANGS", "import_langgraph", "load_prompts", "parse_judgement", "reply_text", "window_of"]

LANGS = ("zh", "en")
PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"

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


def parse_judgement(text: str) -> bool | None:
    """Read a yes/no judgement from free model output; ``None`` when it cannot be told.

    The first word decides (是/否/相关/不相关/yes/no/relevant/..., after ``<think>`` blocks, JSON keys
    and labels such as ``答案：`` are removed); otherwise every judgement word in the text is collected
    and must agree. Mixed or missing words give ``None``: the caller applies its documented default.

    Example:
        >>> parse_judgement("否。文档讨论的是别的话题"), parse_judgement('{"score": "yes"}')
        (False, True)
        >>> parse_judgement("这是无关的"), parse_judgement("xq#z") is None
        (False, True)
    """
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


def window_of(llm: Any, explicit: int | None = None) -> int | None:
    """Tokens a prompt may use: ``explicit``, else ``input_tokens - out_tokens`` of the model's config.

    ``None`` when neither is known (the graphs then send everything and let the server decide).
    """
    if explicit is not None:
        return explicit
    from module_ai.multimodal import configs_of

    for cfg in configs_of(llm):
        if cfg.input_tokens:
            return cfg.input_tokens - (cfg.out_tokens or 0)
    return None


@cache
def load_prompts(name: str, lang: str) -> dict[str, str]:
    """The templates of ``prompts/graph_<name>.yaml`` for ``lang`` (``zh`` or ``en``)."""
    if lang not in LANGS:
        raise ConfigError(f"lang {lang!r} is not one of 'zh', 'en'", field="lang")
    import yaml

    path = PROMPT_DIR / f"graph_{name}.yaml"
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return {k: str(v).strip() for k, v in data[lang].items()}


def import_langgraph():
    """``langgraph.graph`` (raises MissingDependencyError naming the ``graph`` extra)."""
    return require("langgraph.graph", "graph")


def messages(system: str, user: str) -> list:
    """A system + human message pair."""
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(content=system), HumanMessage(content=user)]
