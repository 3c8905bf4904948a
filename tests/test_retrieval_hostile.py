"""Damaged index files, hostile folders (links out, loops, FIFOs) and malformed documents: each is a
KnowledgeBaseError naming the file or a line in the report, never a traceback, a wrong answer or a
commit on top of a broken generation."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.documents import Document

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

TEXTS = ["长城是中国古代的军事防御工程。", "Rivers carry water to the sea.", "股票市场今天大幅下跌。"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    kb_dir = tmp_path_factory.mktemp("pristine") / "kb"
    docs = [Document(t, metadata={"source": f"s{i}"}) for i, t in enumerate(TEXTS)]
    KnowledgeBase.build(docs, kb_dir, HashingEmbeddings(size=16), show_progress=False)
    return kb_dir


def _gen(kb_dir: Path) -> Path:
    return kb_dir / json.loads((kb_dir / "manifest.json").read_text())["generation"]


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x5A
    p.write_bytes(bytes(data))


FILE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(64)),
    "byte_flip": _flip,
    "appended": lambda p: p.write_bytes(p.read_bytes() + b"\n[1, 2]\n"),
    "deleted": lambda p: p.unlink(),
    "directory": lambda p: (p.unlink(), p.mkdir()),
    "symlink_to_null": lambda p: (p.unlink(), p.symlink_to("/dev/null")),
}
FILES = ["chunks.jsonl", "vectors.npy", "tokens.txt", "sources.json", "bm25/params.index.json",
         "bm25/vocab.index.json", "bm25/data.csc.index.npy", "bm25/indices.csc.index.npy",
         "bm25/indptr.csc.index.npy"]


def _manifest_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        data = json.loads(p.read_text())
        new = change(data)
        p.write_text(json.dumps(data if new is None else new))
    return apply


MANIFEST_DAMAGE: dict[str, Callable[[Path], None]] = {
    **FILE_DAMAGE,
    "a_list": _manifest_edit(lambda m: [m]),
    "no_metric": _manifest_edit(lambda m: m.pop("metric")),
    "no_embedding_model": _manifest_edit(lambda m: m.pop("embedding_model")),
    "metric_unknown": _manifest_edit(lambda m: m.update(metric="manhattan")),
    "generation_int": _manifest_edit(lambda m: m.update(generation=2)),
    "generation_escapes": _manifest_edit(lambda m: m.update(generation="../../etc")),
    "generation_absent_dir": _manifest_edit(lambda m: m.update(generation="gen-000099")),
    "chunking_string": _manifest_edit(lambda m: m.update(chunking="500")),
    "tokenizer_null": _manifest_edit(lambda m: m.update(tokenizer=None)),
    "dimensions_string": _manifest_edit(lambda m: m.update(dimensions="16")),
    "files_list": _manifest_edit(lambda m: m.update(files=["chunks.jsonl"])),
    "checksum_changed": _manifest_edit(lambda m: m["files"].update({"chunks.jsonl": "1:00"})),
    "format_version_string": _manifest_edit(lambda m: m.update(format_version="1")),
    "deep_nesting": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
}
CASES = [(f, kind) for f in FILES for kind in FILE_DAMAGE] + [("manifest.json", k) for k in MANIFEST_DAMAGE]


def _damage(kb_dir: Path, name: str, kind: str) -> Path:
    target = kb_dir / name if name == "manifest.json" else _gen(kb_dir) / name
    (MANIFEST_DAMAGE if name == "manifest.json" else FILE_DAMAGE)[kind](target)
    return target


@pytest.mark.parametrize(("name", "kind"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_damaged_file_is_named_on_read_and_blocks_the_next_write(pristine, tmp_path, name, kind):
    kb_dir = tmp_path / "kb"
    shutil.copytree(pristine, kb_dir, symlinks=True)
    writer = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16))  # opened while the index was whole
    _damage(kb_dir, name, kind)
    manifest_before = (kb_dir / "manifest.json").read_bytes() if (kb_dir / "manifest.json").is_file() else None
    with pytest.raises(KnowledgeBaseError) as opened:
        KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16))
    shown = name if name == "manifest.json" or kind == "checksum_changed" else name.split("/")[-1]
    if kind not in ("generation_absent_dir", "generation_escapes", "checksum_changed"):
        assert shown in str(opened.value)
    with pytest.raises(KnowledgeBaseError):
        writer.add_documents([Document("a new note", metadata={"source": "new"})])
    after = (kb_dir / "manifest.json").read_bytes() if (kb_dir / "manifest.json").is_file() else None
    assert after == manifest_before  # nothing committed on top of the broken generation


def test_index_without_checksums_still_checks_shapes(pristine, tmp_path):
    kb_dir = tmp_path / "kb"
    shutil.copytree(pristine, kb_dir)
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    del manifest["files"], manifest["manifest_checksum"]  # an index written before checksums existed
    (kb_dir / "manifest.json").write_text(json.dumps(manifest))
    assert len(KnowledgeBase.open(kb_dir, None).documents()) == 3
    (_gen(kb_dir) / "chunks.jsonl").write_text('{"id": 1}\n[]\n"x"\n', encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="chunks.jsonl is damaged"):
        KnowledgeBase.open(kb_dir, None)


# ----------------------------------------------------------------- hostile folders and files
@pytest.fixture()
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("公开文档讲长城。", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("SECRET-TOKEN 不应被索引", encoding="utf-8")
    return docs


def _kb(src, tmp_path: Path, **kw) -> KnowledgeBase:
    return KnowledgeBase.build(src, tmp_path / "kb", HashingEmbeddings(size=16), show_progress=False, **kw)


def test_links_out_of_the_folder_are_skipped_and_listed(folder, tmp_path):
    (folder / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "outside").symlink_to(tmp_path, target_is_directory=True)
    kb = _kb(folder, tmp_path)
    assert not any("SECRET" in d.page_content for d in kb.documents())
    assert [Path(s).name for s in kb.sources()] == ["a.txt"]
    skipped = kb.last_report.skipped
    assert set(skipped) == {str(folder / "leak.txt"), str(folder / "outside")}
    assert all("outside the indexed folder" in why and "follow_symlinks" in why for why in skipped.values())
    followed = KnowledgeBase.build(folder, tmp_path / "kb2", HashingEmbeddings(size=16), show_progress=False,
                                   follow_symlinks=True)
    assert any("SECRET" in d.page_content for d in followed.documents())


def test_symlinked_document_is_replaced_on_sync(folder, tmp_path):
    target = tmp_path / "shared.md"
    target.write_text("# 版本\n第一版内容讲黄河。", encoding="utf-8")
    (folder / "shared.md").symlink_to(target)
    kb = _kb(folder, tmp_path, follow_symlinks=True)
    target.write_text("# 版本\n第二版内容讲长江。", encoding="utf-8")
    report = kb.sync(folder)
    assert report.updated == [str(folder / "shared.md")]
    texts = [d.page_content for d in kb.documents()]
    assert not any("第一版" in t for t in texts) and any("第二版" in t for t in texts)
    ids = [d.id for d in KnowledgeBase.open(tmp_path / "kb", None).documents()]
    assert len(ids) == len(set(ids))
    (folder / "shared.md").unlink()
    assert kb.sync(folder).deleted == [str(folder / "shared.md")]


def test_symlink_loops_and_fifos_are_listed_not_fatal(folder, tmp_path):
    (folder / "self.txt").symlink_to(folder / "self.txt")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    os.mkfifo(folder / "pipe.txt")
    kb = _kb(folder, tmp_path)
    assert [Path(s).name for s in kb.sources()] == ["a.txt"]
    skipped = kb.last_report.skipped
    assert "loop" in skipped[str(folder / "self.txt")]
    assert "loop" in skipped[str(folder / "sub" / "up")]
    assert "not a regular file" in skipped[str(folder / "pipe.txt")]
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(KnowledgeBaseError, match="loop"):
        _kb(loop, tmp_path)


def test_malformed_office_file_is_reported_per_file(folder, tmp_path):
    (folder / "fake.docx").write_text("this is not a zip archive", encoding="utf-8")
    (folder / "fake.pdf").write_bytes(b"%PDF-1.4 broken")
    (folder / "bad.txt").write_bytes(b"\xff\xfe\x00\xd8 \x81\x30" * 3)
    kb = _kb(folder, tmp_path)
    assert [Path(s).name for s in kb.sources()] == ["a.txt"]
    skipped = kb.last_report.skipped
    assert {Path(p).name for p in skipped} >= {"fake.docx", "fake.pdf"}
    assert "cannot read this .docx" in skipped[str(folder / "fake.docx")]
    (folder / "bad.txt").unlink()
    (folder / "fake.pdf").unlink()
    with pytest.raises(KnowledgeBaseError, match=r"fake\.docx: cannot read this \.docx"):
        KnowledgeBase.build(folder, tmp_path / "kb2", HashingEmbeddings(size=16), show_progress=False,
                            on_error="raise")
