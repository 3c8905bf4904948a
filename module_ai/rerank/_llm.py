"""``LLMReranker``: rerank with any chat model, for setups that have no rerank model (e.g. Ollama).

Two modes, with templates as data files (``module_ai/prompts/rerank_{mode}.{zh,en}.txt``, overridable
through ``$MODULE_AI_PROMPTS``):

- ``pointwise``: one call per distinct text, ``max_concurrency`` at a time; the model answers a 0..10
  grade. ``raw_score`` is the grade, ``relevance_score`` = grade / 10.
- ``listwise``: the model orders numbered passages (``[2] > [1] > [3]``); more than ``window`` texts
  are ordered RankGPT-style with windows sliding from the back to the front (step ``window // 2``).
  ``raw_score`` is the final 1-based position, ``relevance_score`` = 1 - (position among judged) / n.

Malformed output never fails the call: a text whose grade cannot be read, or that the model left out
of every ordering, gets ``relevance_score`` 0.0 and keeps its input order after the judged ones, with
``rerank_fallback: True`` and ``rerank_note`` in its metadata. Errors of the chat model itself
(timeouts, HTTP errors) are raised as :class:`~module_ai.errors.BackendError`. Usage is reported by
the chat model (``kind="chat"`` records).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from module_ai.errors import BackendError, ModuleAIError
from module_ai.prompts.replies import parse_judgement, reply_text
from module_ai.rerank._base import BaseReranker
from module_ai.rerank._scores import Judgement

__all__ = ["LLMReranker", "parse_grade", "parse_ordering", "sliding_windows"]

_CJK = re.compile(r"[\u4e00-\u9fff]")
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")
_LABELLED = re.compile(r"(?:分数|得分|评分|score|rating)\s*[:：=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10\b")
SHORT_REPLY_CHARS = 40
"""A reply longer than this is read only through labelled patterns (``分数: 7``, ``7/10``)."""


def _clean(reply: str) -> str:
    return reply_text(reply).strip("`*\"' \n")


def parse_grade(reply: str) -> float | None:
    """A 0..10 grade from a model reply, or ``None`` when it cannot be read.

    Example:
        >>> parse_grade("<think>...</think>8"), parse_grade("分数：7"), parse_grade("xq#z")
        (8.0, 7.0, None)
    """
    text = _clean(reply)
    for pattern in (_LABELLED, _OUT_OF_TEN):
        match = pattern.search(text)
        if match and 0 <= float(match.group(1)) <= 10:
            return float(match.group(1))
    if len(text) > SHORT_REPLY_CHARS:
        return None
    numbers = {float(n) for n in _NUMBER.findall(text)}
    if len(numbers) == 1:
        value = numbers.pop()
        return value if 0 <= value <= 10 else None
    if numbers:
        return None
    verdict = parse_judgement(text, bare=True)  # a bare yes/no answer
    return None if verdict is None else 10.0 * verdict


def parse_ordering(reply: str, count: int) -> list[int]:
    """0-based positions in the order the model gave (``[2] > [1]`` -> ``[1, 0]``); invalid and repeated
    numbers are skipped, so the list may be shorter than ``count`` (or empty).

    Example:
        >>> parse_ordering("[3] > [1] > [3] > [9]", 3)
        [2, 0]
    """
    text = _clean(reply)
    numbers = re.findall(r"\[(\d+)\]", text) or _NUMBER.findall(text)
    seen: list[int] = []
    for raw in numbers:
        if raw.isdigit() and 1 <= int(raw) <= count and int(raw) - 1 not in seen:
            seen.append(int(raw) - 1)
    return seen


def sliding_windows(count: int, window: int) -> list[tuple[int, int]]:
    """Window spans ``(start, end)`` from the back to the front, overlapping by half a window.

    Example:
        >>> sliding_windows(10, 4)
        [(6, 10), (4, 8), (2, 6), (0, 4)]
    """
    step = max(1, window // 2)
    spans, end = [], count
    while True:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            return spans
        end -= step


def _snippet(reply: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in _clean(reply))
    return text[:60]


class LLMReranker(BaseReranker):
    """Reranks with a chat model's judgement (pointwise grades or a listwise ordering).

    Example:
        >>> rr = LLMReranker(llm=reg.chat("qwen3-ollama"), mode="pointwise")   # doctest: +SKIP
        >>> rr.rank("熊猫吃什么", ["熊猫主要吃竹子。", "汽车需要加油。"])           # doctest: +SKIP
        [(0, 0.9), (1, 0.0)]
    """

    llm: Any
    """Any LangChain chat model (or runnable taking a message list and returning a message)."""
    mode: Literal["pointwise", "listwise"] = "pointwise"
    language: Literal["auto", "zh", "en"] = "auto"
    """Template language; ``auto``: Chinese when the query has Chinese characters."""
    window: int = Field(default=20, ge=2)
    """Listwise: passages per call."""
    max_chars: int = Field(default=1500, gt=0)
    """Each text is cut to this many characters in the prompt."""
    max_concurrency: int = Field(default=4, gt=0)
    """Pointwise: parallel calls."""

    # --- prompts ---------------------------------------------------------------------------------
    def _template(self, query: str) -> str:
        from module_ai.prompts import load_prompt

        lang = self.language if self.language != "auto" else ("zh" if _CJK.search(query) else "en")
        return load_prompt(f"rerank_{self.mode}", lang)

    def _pointwise_prompts(self, query: str, texts: list[str]) -> list[str]:
        template = self._template(query)
        return [template.format(query=query, document=t[: self.max_chars]) for t in texts]

    def _listwise_prompt(self, query: str, texts: list[str]) -> str:
        passages = "\n".join(f"[{i + 1}] {t[: self.max_chars]}" for i, t in enumerate(texts))
        return self._template(query).format(query=query, passages=passages, count=len(texts))

    # --- calls -----------------------------------------------------------------------------------
    def _failure(self, exc: Exception) -> ModuleAIError:
        if isinstance(exc, ModuleAIError):
            return exc
        return BackendError(f"chat model failed while reranking: {type(exc).__name__}: {exc}", model=self.name)

    def _ask_many(self, prompts: list[str], callbacks: Any) -> list[str]:
        config = {"max_concurrency": self.max_concurrency, "callbacks": callbacks}
        try:
            replies = self.llm.batch([[("human", p)] for p in prompts], config=config)
        except Exception as exc:
            raise self._failure(exc) from exc
        return [_text(r) for r in replies]

    async def _aask_many(self, prompts: list[str], callbacks: Any) -> list[str]:
        config = {"max_concurrency": self.max_concurrency, "callbacks": callbacks}
        try:
            replies = await self.llm.abatch([[("human", p)] for p in prompts], config=config)
        except Exception as exc:
            raise self._failure(exc) from exc
        return [_text(r) for r in replies]

    # --- scoring ---------------------------------------------------------------------------------
    def _judge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        if self.mode == "pointwise":
            return _grades(self._ask_many(self._pointwise_prompts(query, texts), callbacks))
        state = _Ordering(len(texts))
        for start, end in sliding_windows(len(texts), self.window):
            ids = state.order[start:end]
            reply = self._ask_many([self._listwise_prompt(query, [texts[i] for i in ids])], callbacks)[0]
            state.apply(start, end, reply)
        return state.judgements()

    async def _ajudge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        if self.mode == "pointwise":
            return _grades(await self._aask_many(self._pointwise_prompts(query, texts), callbacks))
        state = _Ordering(len(texts))
        for start, end in sliding_windows(len(texts), self.window):
            ids = state.order[start:end]
            replies = await self._aask_many([self._listwise_prompt(query, [texts[i] for i in ids])], callbacks)
            state.apply(start, end, replies[0])
        return state.judgements()


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _grades(replies: list[str]) -> list[Judgement]:
    out = []
    for reply in replies:
        grade = parse_grade(reply)
        if grade is None:
            out.append(Judgement(None, 0.0, f"unparsable judgement {_snippet(reply)!r}; kept input order"))
        else:
            out.append(Judgement(grade, grade / 10.0))
    return out


class _Ordering:
    """The listwise state: the current order, which texts the model placed, the last note."""

    def __init__(self, count: int) -> None:
        self.order = list(range(count))
        self.placed: set[int] = set()
        self.notes: dict[int, str] = {}

    def apply(self, start: int, end: int, reply: str) -> None:
        ids = self.order[start:end]
        picked = parse_ordering(reply, len(ids))
        rest = [p for p in range(len(ids)) if p not in picked]
        self.placed.update(ids[p] for p in picked)
        for p in rest:
            self.notes[ids[p]] = f"left out of the model's ordering {_snippet(reply)!r}; kept input order"
        self.order[start:end] = [ids[p] for p in picked + rest]

    def judgements(self) -> list[Judgement]:
        count = len(self.order)
        judged = [i for i in self.order if i in self.placed]
        out: list[Judgement] = [Judgement(None, 0.0, self.notes.get(i, "not judged")) for i in range(count)]
        for position, index in enumerate(judged):
            out[index] = Judgement(float(self.order.index(index) + 1), 1.0 - position / count)
        return out
