"""Pure functions that score generated answers: normalisation, exact-span and F1, citations, refusals.

Scoring follows SQuAD and CMRC 2018:

- Chinese (``lang="zh"``): lowercase, drop whitespace and punctuation (CJK and ASCII); tokens are the
  single CJK characters plus latin words/numbers (CMRC's "mixed segmentation"), so F1 is
  character-level for Chinese text.
- English (``lang="en"``): lowercase, drop punctuation and the articles a/an/the, split on whitespace
  (SQuAD's ``normalize_answer``); F1 over those tokens.
- F1 is SQuAD's bag-of-tokens F1 (``2PR/(P+R)`` over the multiset overlap), the best over the gold
  answers. An answer is *correct* when the tokens of a gold answer occur contiguously in it.

Citation markers ``[n]`` are read with :func:`module_ai.chains.context.citations` (the package's one
citation parser) and removed before scoring the text. Refusals are recognised by
:func:`module_ai.chains.grounding.is_refusal` (the one the chain uses, re-exported here): the exact refusal
sentence, or a reply of nothing but citation markers and punctuation.

Example:
    >>> answer_f1("光荣和ω-force开发[1]", ["光荣和ω-force"])   # the gold's 5 tokens of 7: P 5/7, R 1
    0.8333
    >>> is_refusal("根据已知信息无法回答。[2]", "根据已知信息无法回答")
    True
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence

from module_ai.chains.context import citations, strip_citations
from module_ai.chains.grounding import is_refusal

__all__ = [
    "answer_contains",
    "answer_f1",
    "citation_scores",
    "is_refusal",
    "normalize_answer",
    "strip_citations",
    "tokens_of",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MIXED = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ASCII_PUNCT = set(string.punctuation)


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith(("P", "S"))


def normalize_answer(text: str, lang: str = "zh") -> str:
    """Normalise for comparison; citations are removed first.

    ``zh``: lowercase, no whitespace, no punctuation/symbols (``"《战国 无双3》！"`` → ``"战国无双3"``).
    ``en``: lowercase, no punctuation, no articles, single spaces (``"The Big  cat."`` → ``"big cat"``).
    """
    text = unicodedata.normalize("NFKC", strip_citations(text)).lower()
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    if lang == "zh":
        return "".join(text.split())
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens_of(text: str, lang: str = "zh") -> list[str]:
    """Scoring tokens: CJK characters and latin words (``zh``), or words (``en``), after normalisation."""
    if lang != "zh":
        return normalize_answer(text, "en").split()
    text = unicodedata.normalize("NFKC", strip_citations(text)).lower()
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    return _MIXED.findall(text)


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(haystack[i:i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def answer_contains(answer: str, golds: Sequence[str], lang: str = "zh") -> bool:
    """Whether some gold answer's tokens occur contiguously in the normalised answer."""
    have = tokens_of(answer, lang)
    return any(_contains(have, tokens_of(g, lang)) for g in golds)


def _f1(pred: Sequence[str], gold: Sequence[str]) -> float:
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def answer_f1(answer: str, golds: Sequence[str], lang: str = "zh") -> float:
    """Best token F1 of the answer against the gold answers (0.0 for an empty answer), 4 decimals."""
    pred = tokens_of(answer, lang)
    return round(max((_f1(pred, tokens_of(g, lang)) for g in golds), default=0.0), 4)


def citation_scores(answer: str, relevant: Collection[int], n_blocks: int) -> dict[str, int]:
    """Count the answer's distinct ``[n]`` markers and those pointing at a relevant block.

    Args:
        answer: the generated answer.
        relevant: the block numbers (1-based) holding a relevant passage.
        n_blocks: how many context blocks the model was shown (markers outside 1..n are wrong).

    Returns:
        ``{"markers": all distinct markers, "good": markers naming a relevant block,
        "out_of_range": markers naming no block}``.
    """
    cites = citations(answer)
    return {"markers": len(cites), "good": sum(1 for n in cites if n in relevant),
            "out_of_range": sum(1 for n in cites if not 1 <= n <= n_blocks)}


def has_cjk(text: str) -> bool:
    """Whether the text holds CJK characters (picks ``zh`` scoring for a data set)."""
    return bool(_CJK.search(text))
