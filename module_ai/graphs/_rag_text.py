"""Pure text functions of the RAG agent: context blocks, fitting, sentences, citations, sources.

Inputs are never mutated; Documents that must be shortened are copied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from module_ai.tokens import estimate_tokens

__all__ = [
    "SNIPPET_CHARS", "citations", "context_blocks", "fit_documents", "group_claims", "neutralize",
    "sources_of", "split_sentences", "truncate_to_tokens",
]

SNIPPET_CHARS = 200
"""Characters of document text kept in each ``sources`` entry."""

_TAG = re.compile(r"<(\s*/?\s*document)", re.IGNORECASE)
_CITE = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]|【(\d+)】")
_SENTENCE = re.compile(
    r"(?:[^。！？!?；;\n.]|\.(?![\s\n]|$))+"          # sentence body ('.' inside 3.5, e.g., a.md)
    r"(?:[。！？!?；;]+|\.+)?"                        # its end mark
    r"(?:\s*(?:\[\d+(?:\s*[,，、]\s*\d+)*\]|【\d+】))*"  # citations written after the end mark
)
_HAS_WORD = re.compile(r"[0-9A-Za-z\u3400-\u9fff]")


def neutralize(text: str) -> str:
    """Break ``<document`` / ``</document`` tags inside text so it cannot close or open a block."""
    return _TAG.sub(r"‹\1", text)


def context_blocks(docs: Sequence[Any]) -> str:
    """Numbered, delimited blocks: ``[n] source: ...`` then the text between ``<document>`` tags.

    Example:
        >>> from langchain_core.documents import Document
        >>> print(context_blocks([Document("水的沸点是100度。", metadata={"source": "a.md"})]))
        [1] source: a.md
        <document index="1">
        水的沸点是100度。
        </document>
    """
    blocks = []
    for n, doc in enumerate(docs, 1):
        source = " ".join(str(doc.metadata.get("source") or doc.metadata.get("id") or "-").split())
        blocks.append(f"[{n}] source: {neutralize(source)}\n<document index=\"{n}\">\n"
                      f"{neutralize(doc.page_content)}\n</document>")
    return "\n\n".join(blocks)


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose token estimate fits ``budget``."""
    if estimate_tokens(text) <= budget:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def fit_documents(docs: Sequence[Any], budget: int | None) -> list[Any]:
    """Documents, in rank order, whose context blocks fit ``budget`` tokens (the first one shortened
    if it alone is too long); ``None`` keeps all."""
    if budget is None:
        return list(docs)
    kept: list[Any] = []
    for doc in docs:
        if estimate_tokens(context_blocks([*kept, doc])) <= budget:
            kept.append(doc)
        elif not kept:
            room = max(budget - estimate_tokens(context_blocks([doc.model_copy(update={"page_content": ""})])),
                       0)
            kept.append(doc.model_copy(update={"page_content": truncate_to_tokens(doc.page_content, room)}))
            break
        else:
            break
    return kept


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer, each with the citations written after its end mark.

    Example:
        >>> split_sentences("水在100度沸腾。[1] It boils at 100 C [2]. 3.5 is a number.")
        ['水在100度沸腾。[1]', 'It boils at 100 C [2].', '3.5 is a number.']
    """
    found = (m.group(0).strip() for m in _SENTENCE.finditer(text))
    return [s for s in found if _HAS_WORD.search(_CITE.sub("", s))]


def citations(text: str) -> list[int]:
    """Document numbers cited as ``[1]``, ``[1, 2]``, ``[1][3]`` or ``【1】``, in order, without repeats."""
    numbers: list[int] = []
    for match in _CITE.finditer(text):
        for part in re.split(r"[,，、]", match.group(1) or match.group(2)):
            n = int(part.strip())
            if n not in numbers:
                numbers.append(n)
    return numbers


def group_claims(sentences: Sequence[str], max_claims: int) -> list[str]:
    """At most ``max_claims`` claims: consecutive sentences joined when there are more."""
    if len(sentences) <= max_claims:
        return list(sentences)
    size = -(-len(sentences) // max_claims)
    return [" ".join(sentences[i:i + size]) for i in range(0, len(sentences), size)]


def sources_of(docs: Sequence[Any], answer: str) -> list[dict[str, Any]]:
    """One entry per context document: ``n``, ``id``, ``source``, ``score``, ``snippet``, ``cited``."""
    cited = set(citations(answer))
    return [
        {
            "n": n,
            "id": doc.metadata.get("id", doc.id),
            "source": doc.metadata.get("source"),
            "score": doc.metadata.get("score"),
            "snippet": doc.page_content[:SNIPPET_CHARS],
            "cited": n in cited,
        }
        for n, doc in enumerate(docs, 1)
    ]
