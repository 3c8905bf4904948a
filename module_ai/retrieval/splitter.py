"""A Chinese-aware text splitter producing chunk Documents with stable ids.

Text is cut into sentences after Chinese and English sentence ends (``。！？；…`` and ``.!?;`` followed
by a space or line end, closing quotes and brackets kept with their sentence) and at paragraph
boundaries (blank lines, single line breaks). Sentences are packed greedily into chunks of at most
``chunk_size`` characters (or tokens); a sentence longer than that is cut at commas, spaces or, at
worst, hard. Each chunk after the first repeats up to ``chunk_overlap`` of the previous chunk's tail
(whole sentences when they fit, else the last ``chunk_overlap`` characters/tokens).

Chunk ids are ``blake2b(source, text, n)`` where ``n`` counts earlier identical chunks of the same
source, so they stay the same while the text does (and re-indexing an unchanged file is a no-op).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = ["bare_heading", "chunk_id", "iter_chunks", "split_documents", "split_text"]

_SENTENCE_END = re.compile(
    r"(?:[。！？；…]+|\.{3,}|[.!?;]+(?=\s|$))[”’\"'」』）)\]】]*\s*|\n\s*\n\s*|\n"
)
_SOFT_BREAK = re.compile(r"[，、,：:\s]+")
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SEPARATOR_LINE = re.compile(r"^\s*(?:[-*_=~]\s*){3,}$")
_WORD = re.compile(r"\w")

Span = tuple[int, int]


def chunk_id(source: str, text: str, occurrence: int = 0) -> str:
    """Return the stable id of a chunk: a 24-hex-digit blake2b of source, text and occurrence."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{source}\x00{occurrence}\x00".encode())
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def bare_heading(text: str) -> str | None:
    """For text made only of Markdown headings and separators (``---``, a bare ``# Title``), the
    headings (``""`` for separators only); ``None`` for text with content of its own.

    Such text is never indexed as a chunk: its headings go into the next chunk's ``heading``.

    Example:
        >>> bare_heading("# 安装\\n\\n---"), bare_heading("---"), bare_heading("# 安装\\n先下载。")
        ('安装', '', None)
    """
    if "#" not in text and "_" not in text and _WORD.search(text):
        return None  # a word outside any heading or separator line (their only word character is "_")
    return _bare_lines(text)


def _bare_lines(text: str) -> str | None:
    """:func:`bare_heading` line by line (its full path)."""
    headings = []
    for line in text.splitlines():
        if not line.strip() or _SEPARATOR_LINE.match(line):
            continue
        match = _HEADING_LINE.match(line)
        if match:
            headings.append(match.group(1))
        elif _WORD.search(line):
            return None  # a line with content of its own
    # only headings, separators and punctuation-only lines (``` fences, |---|) remain
    return " > ".join(h for h in headings if h)


def _length_function(unit: str) -> Callable[[str], int]:
    if unit == "chars":
        return len
    if unit == "tokens":
        from module_ai.retrieval.tokenizer import tokenize

        return lambda s: len(tokenize(s, stopwords=False))
    raise ValueError(f"unit must be 'chars' or 'tokens', not {unit!r}")


def _sentences(text: str) -> list[Span]:
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start:
            spans.append((start, match.end()))
            start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _hard_split(text: str, span: Span, size: int, length: Callable[[str], int]) -> list[Span]:
    """Cut one over-long sentence at soft breaks, else at fixed width."""
    pieces: list[Span] = []
    start, end = span
    while start < end:
        if length(text[start:end]) <= size:
            pieces.append((start, end))
            break
        cut = start + 1
        while cut < end and length(text[start : cut + 1]) <= size:
            cut += 1
        soft = [m.end() for m in _SOFT_BREAK.finditer(text, start, cut) if m.end() < cut]
        cut = soft[-1] if soft and soft[-1] - start > (cut - start) // 2 else cut
        pieces.append((start, cut))
        start = cut
    return pieces


def _overlap_start(
    text: str, units: Sequence[Span], nxt: Span, size: int, overlap: int, length: Callable[[str], int]
) -> int:
    """Where the chunk starting with ``nxt`` begins: a tail of ``units`` of at most ``overlap``.

    Whole units are preferred; if even the last unit is longer than ``overlap``, its last ``overlap``
    characters/tokens are used. The tail is shortened (or dropped) until ``nxt`` fits in ``size``.
    """
    end = units[-1][1]
    starts = [s for s, _ in units[1:] if length(text[s:end]) <= overlap]
    if not starts and overlap > 0:
        cut = end
        while cut > units[-1][0] and length(text[cut - 1 : end]) <= overlap:
            cut -= 1
        while cut < end and text[cut - 1 : cut + 1].isalnum() and text[cut].isascii():
            cut += 1  # do not start inside a Latin word
        while cut < end and not text[cut].isalnum() and text[cut].isascii():
            cut += 1
        starts = [cut] if cut < end else []
    for start in sorted(starts):
        if length(text[start : nxt[1]]) <= size:
            return start
    return nxt[0]


def _is_paragraph_end(text: str, span: Span) -> bool:
    return bool(re.search(r"\n\s*\n\s*$", text[span[0] : span[1]]))


def split_text(
    text: str,
    chunk_size: int = 500,
    chunk_overlap: int = 80,
    *,
    unit: str = "chars",
    length_function: Callable[[str], int] | None = None,
) -> list[Span]:
    """Split text into ``(start, end)`` character spans (see the module docstring).

    A chunk at least half full also ends at a paragraph boundary (a blank line); no overlap is
    carried across such a boundary.

    Args:
        text: the text.
        chunk_size: maximum chunk length in ``unit``.
        chunk_overlap: how much of a chunk's tail the next chunk repeats, in ``unit``.
        unit: ``"chars"`` or ``"tokens"`` (the keyword tokenizer's tokens).
        length_function: overrides ``unit`` with any ``str -> int`` (e.g. a model's tokenizer).

    Returns:
        Spans in text order, leading and trailing whitespace excluded.
    """
    _check_sizes(chunk_size, chunk_overlap)
    raw = length_function or _length_function(unit)

    def length(piece: str) -> int:
        return raw(piece.strip())

    if length(text) <= chunk_size:  # fast path: the whole text is one chunk
        return [_strip(text, (0, len(text)))] if text.strip() else []
    units = [p for s in _sentences(text) for p in _hard_split(text, s, chunk_size, length)]
    chunks: list[Span] = []
    current: list[Span] = []
    for span in units:
        if current and _is_paragraph_end(text, current[-1]) and length(text[current[0][0] : current[-1][1]]) * 2 >= chunk_size:
            chunks.append((current[0][0], current[-1][1]))
            current = []
        elif current and length(text[current[0][0] : span[1]]) > chunk_size:
            chunks.append((current[0][0], current[-1][1]))
            start = _overlap_start(text, current, span, chunk_size, chunk_overlap, length)
            current = [(start, span[0])] if start < span[0] else []
        current.append(span)
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return [_strip(text, s) for s in chunks if text[s[0] : s[1]].strip()]


def _check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"need chunk_size > 0 and 0 <= chunk_overlap < chunk_size, got {chunk_size}, {chunk_overlap}")


def _strip(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_documents(
    docs: Iterable[Document],
    chunk_size: int = 500,
    chunk_overlap: int = 80,
    *,
    unit: str = "chars",
    length_function: Callable[[str], int] | None = None,
) -> list[Document]:
    """Split Documents into chunk Documents with stable ids and position metadata.

    Args:
        docs: Documents, e.g. from :func:`~module_ai.retrieval.load_documents`.
        chunk_size: maximum chunk length in ``unit``.
        chunk_overlap: overlap between consecutive chunks of one Document, in ``unit``.
        unit: ``"chars"`` (default) or ``"tokens"``.
        length_function: a custom ``str -> int`` length (overrides ``unit``).

    Returns:
        New Documents (inputs are not changed) with ``id`` set and metadata: the input's metadata plus
        ``source`` (``"mem:<hash>"`` if the input had none), ``chunk_id``, ``chunk_index`` (per source)
        and ``start_index`` (character offset in the source).

    Example:
        >>> from langchain_core.documents import Document
        >>> chunks = split_documents([Document("第一句。第二句！", metadata={"source": "a.txt"})], 6, 0)
        >>> [c.page_content for c in chunks], chunks[1].metadata["start_index"]
        (['第一句。', '第二句！'], 4)
    """
    from langchain_core.documents import Document

    return [Document(page_content=text, metadata=meta, id=cid)
            for text, meta, cid in iter_chunks(docs, chunk_size, chunk_overlap, unit=unit,
                                               length_function=length_function)]


def iter_chunks(
    docs: Iterable[Document],
    chunk_size: int = 500,
    chunk_overlap: int = 80,
    *,
    unit: str = "chars",
    length_function: Callable[[str], int] | None = None,
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """The chunks of :func:`split_documents` as ``(text, metadata, id)``, without building Documents.

    An index keeps plain records, so it skips the ~12 µs pydantic validation per chunk Document.
    """
    index: dict[str, int] = {}
    seen: dict[str, int] = {}
    fits = _fits(chunk_size, unit, length_function)
    for doc in docs:
        content, metadata = doc.page_content, doc.metadata
        source = str(metadata.get("source") or f"mem:{chunk_id('', content)[:16]}")
        base = int(metadata.get("start_index", 0) or 0)
        if fits(content):  # one chunk (or none): the split_text fast path without its copies
            _check_sizes(chunk_size, chunk_overlap)
            spans = [_strip(content, (0, len(content)))] if not content.isspace() and content else []
        else:
            spans = split_text(content, chunk_size, chunk_overlap, unit=unit, length_function=length_function)
        pending = ""  # headings of bare chunks, folded into the next chunk's ``heading``
        for start, end in spans:
            text = content[start:end]
            bare = bare_heading(text)
            if bare is not None:
                pending = " > ".join(h for h in (pending, bare) if h)
                continue
            cid = first = chunk_id(source, text)
            n = seen.get(first, 0)  # identical chunks of one source: 2nd, 3rd... get their own ids
            seen[first] = n + 1
            if n:
                cid = chunk_id(source, text, n)
            meta = {**metadata, "source": source, "chunk_id": cid,
                    "chunk_index": index.get(source, 0), "start_index": base + start}
            if pending and pending not in str(meta.get("heading") or ""):
                meta["heading"] = " > ".join(h for h in (pending, meta.get("heading")) if h)
            pending = ""
            index[source] = index.get(source, 0) + 1
            yield text, meta, cid


def _fits(chunk_size: int, unit: str, length_function: Callable[[str], int] | None) -> Callable[[str], bool]:
    """``text -> True`` when :func:`split_text` would take its one-chunk fast path for ``text``.

    Only decided without measuring for plain character counts: text of at most ``chunk_size``
    characters has at most that many once stripped. Anything else goes through :func:`split_text`.
    """
    if length_function is None and unit == "chars":
        return lambda text: len(text) <= chunk_size
    return lambda text: False
