"""Mixed Chinese/English tokenization for the keyword (BM25) index.

Runs of Han characters are segmented with ``rjieba`` (jieba-rs); every other run of letters and digits
is lower-cased and split on non-word characters, so ``"用Python做机器学习"`` gives
``["用", "python", "做", "机器", "学习"]`` (stop words aside). ``rjieba`` is imported on first use.

The tokenizer's settings are stored in the knowledge base's manifest (:data:`DEFAULT_TOKENIZER`), so a
reopened index always tokenizes queries the way its chunks were tokenized.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["DEFAULT_TOKENIZER", "TOKENIZER_NAME", "get_tokenizer", "tokenize"]

TOKENIZER_NAME = "module_ai-mixed"
"""Name recorded in the manifest; bump :data:`_TOKENIZER_VERSION` when token output changes."""

_TOKENIZER_VERSION = 1

DEFAULT_TOKENIZER: dict[str, Any] = {
    "name": TOKENIZER_NAME,
    "version": _TOKENIZER_VERSION,
    "cjk": "search",
    "stem": False,
    "stopwords": True,
}
"""Default settings: jieba search mode for Han runs, stop words removed, no English stemming."""

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_RUNS = re.compile(rf"([{_HAN}]+)|([^\W_{_HAN}]+)")

_STOP_EN = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is "
    "it its of on or our so than that the their them then there these they this those to was we were "
    "what when where which who whom why will with would you your".split()
)
_STOP_ZH = frozenset(
    "的 了 是 在 和 与 及 或 也 就 都 而 着 之 其 被 把 对 从 由 于 为 以 等 这 那 这个 那个 这些 那些 "
    "什么 哪 哪个 哪些 哪里 谁 吗 呢 吧 啊 么 怎么 怎样 如何 为什么 多少 几 一个 有 个".split()
)


def _light_stem(word: str) -> str:
    """Strip common English inflections: plural ``s``/``es``/``ies``, ``ing``, ``ed``, final ``e``."""
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def tokenize(text: str, *, cjk: str = "search", stem: bool = False, stopwords: bool = True) -> list[str]:
    """Split mixed Chinese/English text into keyword tokens.

    Args:
        text: any text; Han runs go to jieba, other letter/digit runs to a regex.
        cjk: ``"search"`` (jieba search mode: long words also yield their sub-words, better recall) or
            ``"exact"`` (jieba's default precise mode).
        stem: apply a light English suffix stripper.
        stopwords: drop a small list of English and Chinese function words.

    Returns:
        The tokens, lower-cased, in text order.

    Example:
        >>> tokenize("我喜欢自然语言处理 and NLP")
        ['我', '喜欢', '自然', '语言', '自然语言', '处理', 'nlp']
    """
    cut = _jieba_cut(cjk)
    out: list[str] = []
    for han, other in _RUNS.findall(text):
        if han:
            words = cut(han)
            out.extend(w for w in words if not (stopwords and w in _STOP_ZH))
        else:
            word = other.lower()
            if stopwords and word in _STOP_EN:
                continue
            out.append(_light_stem(word) if stem else word)
    return out


@lru_cache(maxsize=4)
def _jieba_cut(mode: str) -> Callable[[str], list[str]]:
    from module_ai.errors import require

    rjieba = require("rjieba", "rag")
    if mode == "search":
        return rjieba.cut_for_search
    if mode == "exact":
        return rjieba.cut
    raise ValueError(f"tokenizer cjk mode must be 'search' or 'exact', not {mode!r}")


def get_tokenizer(settings: Mapping[str, Any] | None = None) -> Callable[[str], list[str]]:
    """Return ``text -> tokens`` for the tokenizer settings stored in a manifest.

    Args:
        settings: a dict like :data:`DEFAULT_TOKENIZER`; ``None`` means the default.

    Raises:
        KnowledgeBaseError: the settings name another tokenizer or a newer version.
    """
    from module_ai.errors import KnowledgeBaseError

    cfg = {**DEFAULT_TOKENIZER, **(settings or {})}
    if cfg["name"] != TOKENIZER_NAME or int(cfg["version"]) > _TOKENIZER_VERSION:
        raise KnowledgeBaseError(
            f"index uses tokenizer {cfg['name']!r} v{cfg['version']}, this module_ai has "
            f"{TOKENIZER_NAME!r} v{_TOKENIZER_VERSION}; rebuild the knowledge base or upgrade module_ai"
        )
    cjk, stem, stop = str(cfg["cjk"]), bool(cfg["stem"]), bool(cfg["stopwords"])

    def _tok(text: str) -> list[str]:
        return tokenize(text, cjk=cjk, stem=stem, stopwords=stop)

    return _tok
