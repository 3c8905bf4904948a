"""Load files into LangChain Documents: plain text, Markdown, HTML, PDF and DOCX.

Each returned Document carries ``source`` (the resolved file path), ``title`` and ``start_index``
(character offset of the Document's text in the file's extracted text). Markdown and DOCX are cut at
headings, one Document per section, with the heading path in ``heading`` (``"安装 > Linux"``). PDF
gives one Document per page with ``page`` (1-based). HTML, PDF and DOCX parsers are optional
(``pip install 'module_ai[docs]'``) and imported only when such a file is loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = ["SUPPORTED_SUFFIXES", "iter_files", "load_documents", "load_file", "normalize_path", "scan_folder"]

_TEXT = (".txt", ".text", ".rst", ".log", ".csv", ".json", ".jsonl")
_MARKDOWN = (".md", ".markdown", ".mdx")
_HTML = (".html", ".htm", ".xhtml")
SUPPORTED_SUFFIXES: tuple[str, ...] = _TEXT + _MARKDOWN + _HTML + (".pdf", ".docx")
"""File suffixes that :func:`load_documents` understands (directories are scanned for these)."""

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _doc(text: str, **metadata: Any) -> Document:
    from langchain_core.documents import Document

    return Document(page_content=text, metadata=metadata)


def _read_text(path: Path, encoding: str) -> str:
    from module_ai.errors import KnowledgeBaseError

    data = path.read_bytes()
    for enc in (encoding, "utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise KnowledgeBaseError(f"cannot decode as {encoding} or gb18030; convert it to UTF-8", path=str(path))


def _sections(blocks: Iterable[tuple[int, str, str]], base: dict[str, Any]) -> list[Document]:
    """Group ``(heading_level, heading, raw_line)`` blocks (level 0 = body) into one Document per section.

    ``start_index`` is the offset of the section's first non-blank line in ``"\n".join(raw_lines)``.
    """
    from module_ai.retrieval.splitter import bare_heading

    docs: list[Document] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    offset = start = 0
    folded: list[str] = []  # headings of sections without content (not ancestors of the next one)

    def flush() -> None:
        text = "\n".join(lines)
        body = text.lstrip("\n")
        if not body.strip():
            return
        heading = " > ".join(h for _, h in path)
        if bare_heading(body) is not None:  # a bare "# Title" or "---": folded into the next heading
            folded.append(heading)
            return
        extra = [h for h in folded if h and not heading.startswith(h)]
        folded.clear()
        skip = len(text) - len(body)
        docs.append(_doc(body.rstrip(), **base, heading="; ".join([*extra, heading] if heading else extra),
                         start_index=start + skip))

    for level, heading, raw in blocks:
        if level > 0:
            flush()
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading.strip())]
            lines, start = [], offset
        lines.append(raw)
        offset += len(raw) + 1
    flush()
    return docs


def _markdown_blocks(text: str) -> Iterator[tuple[int, str, str]]:
    fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _MD_HEADING.match(line)
        yield (len(match.group(1)), match.group(2), line) if match else (0, "", line)


def _load_markdown(path: Path, encoding: str) -> list[Document]:
    text = _read_text(path, encoding)
    first = next((h for lv, h, _ in _markdown_blocks(text) if lv == 1), None)
    return _sections(_markdown_blocks(text), {"source": str(path), "title": first or path.stem})


def _load_text(path: Path, encoding: str) -> list[Document]:
    text = _read_text(path, encoding)
    return [_doc(text, source=str(path), title=path.stem, start_index=0)] if text.strip() else []


def _load_html(path: Path, encoding: str) -> list[Document]:
    from module_ai.errors import require

    bs4 = require("bs4", "docs", path=str(path))
    soup = bs4.BeautifulSoup(_read_text(path, encoding), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    heading = soup.find(["h1"])
    title = soup.title.get_text(strip=True) if soup.title else ""
    title = title or (heading.get_text(strip=True) if heading else "") or path.stem
    body = soup.body or soup
    text = re.sub(r"\n\s*\n+", "\n\n", body.get_text("\n")).strip()
    return [_doc(text, source=str(path), title=title, start_index=0)] if text else []


def _load_pdf(path: Path, encoding: str) -> list[Document]:
    from module_ai.errors import require

    pypdf = require("pypdf", "docs", path=str(path))
    reader = pypdf.PdfReader(str(path))
    meta_title = getattr(reader.metadata, "title", None) if reader.metadata else None
    title, docs, offset = meta_title or path.stem, [], 0
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").strip()
        if text:
            docs.append(_doc(text, source=str(path), title=title, page=number, start_index=offset))
        offset += len(text) + 1
    return docs


def _docx_level(style_name: str) -> int:
    match = re.match(r"^(?:heading|标题)\s*(\d)$", style_name.strip().lower())
    if match:
        return int(match.group(1))
    return 1 if style_name.strip().lower() in ("title", "标题") else 0


def _load_docx(path: Path, encoding: str) -> list[Document]:
    from module_ai.errors import require

    docx = require("docx", "docs", path=str(path))
    document = docx.Document(str(path))
    blocks = [(_docx_level(p.style.name if p.style else ""), p.text, p.text) for p in document.paragraphs]
    first = next((h for lv, h, _ in blocks if lv == 1 and h.strip()), None)
    title = document.core_properties.title or first or path.stem
    return _sections(blocks, {"source": str(path), "title": title})


_LOADERS: dict[str, Callable[[Path, str], list[Document]]] = {
    **dict.fromkeys(_TEXT, _load_text),
    **dict.fromkeys(_MARKDOWN, _load_markdown),
    **dict.fromkeys(_HTML, _load_html),
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}


def load_file(path: str | Path, *, encoding: str = "utf-8") -> list[Document]:
    """Load one file (see the module docstring for what each format yields).

    Raises:
        KnowledgeBaseError: the file is missing or its suffix is not in :data:`SUPPORTED_SUFFIXES`.
        MissingDependencyError: the parser for this format is not installed.
    """
    from module_ai.errors import KnowledgeBaseError

    p = normalize_path(path)
    if not p.is_file():
        raise KnowledgeBaseError("no such file", path=str(path))
    loader = _LOADERS.get(p.suffix.lower())
    if loader is None:
        raise KnowledgeBaseError(
            f"unsupported file type {p.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}", path=str(p)
        )
    return loader(p, encoding)


def normalize_path(path: str | Path) -> Path:
    """Absolute path with its folders resolved but its last component kept (a link stays the link).

    The source of a document reached through a symbolic link is the link's path, so editing or
    removing the link updates the index.

    Raises:
        KnowledgeBaseError: the folders form a symbolic-link loop.
    """
    from module_ai.errors import KnowledgeBaseError

    p = Path(os.path.abspath(path))
    try:
        return p.parent.resolve() / p.name if p.name else p.resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: "Symlink loop" before Python 3.13
        raise KnowledgeBaseError(f"symbolic-link loop ({exc}); remove the looping link", path=str(path)) from exc


def _link_target(p: Path) -> Path | str:
    """The resolved target of a link, or why it cannot be followed."""
    try:
        return p.resolve(strict=True)
    except RuntimeError:
        return "symbolic-link loop"
    except OSError as exc:
        return "symbolic-link loop" if exc.errno == 40 else f"broken symbolic link ({exc.strerror})"


def _walk(folder: Path, root: Path, follow: bool, seen: set[Path], files: list[Path], skipped: dict[str, str]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped[str(folder)] = f"cannot list the folder ({exc.strerror})"
        return
    for entry in entries:
        p = Path(entry.path)
        if entry.name.startswith("."):
            continue
        target: Path | str = p
        if entry.is_symlink():
            target = _link_target(p)
            if isinstance(target, str):
                skipped[str(p)] = target
                continue
            if not follow and not target.is_relative_to(root):
                skipped[str(p)] = (f"symbolic link to {target}, outside the indexed folder (not followed; "
                                   "pass follow_symlinks=True to index it)")
                continue
        if target.is_dir():
            real = target if entry.is_symlink() else p.resolve()
            if real in seen:
                skipped[str(p)] = f"symbolic-link loop or a second path to {real} (scanned once)"
            elif entry.is_symlink() and target.is_relative_to(root):
                skipped[str(p)] = f"link to a folder inside the indexed folder (indexed at {target})"
            else:
                seen.add(real)
                _walk(p, root, follow, seen, files, skipped)
        elif p.suffix.lower() in _LOADERS:
            if target.is_file():
                files.append(p)
            else:
                skipped[str(p)] = "not a regular file (FIFO, device or socket)"


def scan_folder(folder: str | Path, *, follow_symlinks: bool = False) -> tuple[list[Path], dict[str, str]]:
    """The supported files under ``folder`` and the entries skipped, with the reason.

    Hidden entries are ignored. Symbolic links are followed only inside ``folder`` unless
    ``follow_symlinks``; a link to a folder inside ``folder`` is skipped (that folder is scanned at its
    real path); loops, broken links and non-regular files are skipped and listed.

    Raises:
        KnowledgeBaseError: ``folder`` itself is a symbolic-link loop.
    """
    root = normalize_path(folder)
    target = _link_target(root)
    if isinstance(target, str):
        from module_ai.errors import KnowledgeBaseError

        raise KnowledgeBaseError(f"cannot index this folder: {target}", path=str(folder))
    files: list[Path] = []
    skipped: dict[str, str] = {}
    _walk(target, target, follow_symlinks, {target}, files, skipped)
    return sorted(files), skipped


def iter_files(folder: str | Path, *, follow_symlinks: bool = False) -> list[Path]:
    """Return the supported files under ``folder`` (recursive, sorted, hidden entries skipped).

    See :func:`scan_folder` for symbolic links and what is skipped.
    """
    return scan_folder(folder, follow_symlinks=follow_symlinks)[0]


def load_documents(path: str | Path, *, encoding: str = "utf-8") -> list[Document]:
    """Load a file, or every supported file under a directory, into Documents.

    Args:
        path: a file or a directory (scanned recursively for :data:`SUPPORTED_SUFFIXES`).
        encoding: text encoding tried first (UTF-8 with BOM and GB18030 are tried next).

    Returns:
        Documents with ``source``, ``title``, ``start_index`` and, where the format has them,
        ``heading`` (Markdown, DOCX) or ``page`` (PDF) metadata.

    Example:
        >>> docs = load_documents("docs/")  # doctest: +SKIP
        >>> docs[0].metadata["heading"]  # doctest: +SKIP
        '安装 > Linux'
    """
    p = normalize_path(path)
    if p.is_dir():
        return [doc for f in iter_files(p) for doc in load_file(f, encoding=encoding)]
    return load_file(p, encoding=encoding)
