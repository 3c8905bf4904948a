"""Tokenizer, splitter and loaders: Chinese segmentation, punctuation, overlap, formats."""

from __future__ import annotations

import itertools
import sys

import pytest
from langchain_core.documents import Document

from module_ai.errors import KnowledgeBaseError, MissingDependencyError
from module_ai.retrieval import load_documents, split_documents, split_text, tokenize
from module_ai.retrieval.embedded.index import build_bm25

# ----------------------------------------------------------------------------- tokenizer


def test_chinese_run_is_segmented():
    toks = tokenize("我们在公司内部使用机器学习平台训练模型")
    assert "机器" in toks and "学习" in toks
    assert "的" not in tokenize("我的机器")  # stop word


def test_query_term_matches_only_after_segmentation():
    """'学习' occurs only inside a run of Han characters with no spaces; BM25 finds it."""
    docs = ["我们公司使用机器学习平台训练模型", "今天天气很好适合出去散步", "股票市场今天大幅下跌"]
    bm25 = build_bm25([tokenize(d) for d in docs])
    ids = [bm25.vocab_dict[t] for t in tokenize("学习") if t in bm25.vocab_dict]
    scores = bm25.get_scores_from_ids(ids)
    assert ids and scores.argmax() == 0 and scores[0] > 0 and scores[1] == scores[2] == 0
    # a character-level or whitespace tokenizer would not produce this token at all
    assert "学习" not in docs[0].split()


def test_mixed_language_and_latin_rules():
    toks = tokenize("用Python做NLP：COVID-19 patients' studies")
    assert toks[:5] == ["用", "python", "做", "nlp", "covid"]
    assert "19" in toks and "patient" in toks and "study" in toks
    assert tokenize("The Running dogs", stem=False) == ["running", "dogs"]
    assert tokenize("the a of", stopwords=False) == ["the", "a", "of"]


def test_search_mode_yields_subwords():
    assert {"自然", "语言", "自然语言"} <= set(tokenize("自然语言处理", cjk="search"))


# ----------------------------------------------------------------------------- splitter
ZH = "第一句话在这里。第二句话也在这里！第三句话呢？第四句；第五句……最后一句。\n\n新段落开始了。"


def test_splits_at_chinese_sentence_ends():
    spans = split_text(ZH, 20, 0)
    parts = [ZH[a:b] for a, b in spans]
    assert parts[0] == "第一句话在这里。第二句话也在这里！"
    assert all(len(p) <= 20 for p in parts)
    assert all(p[-1] in "。！？；…" for p in parts)  # every chunk ends at a sentence end
    assert "".join(parts) == ZH.replace("\n", "")


def test_overlap_repeats_previous_sentences():
    parts = [ZH[a:b] for a, b in split_text(ZH, 20, 8)]
    assert parts[1].startswith("二句话也在这里！")  # 8 chars of the previous chunk's tail
    for prev, cur in itertools.pairwise(parts):
        if not cur.startswith("新段落"):  # no overlap across a paragraph boundary
            assert any(prev.endswith(cur[:n]) for n in range(1, 9))


def test_paragraph_boundary_ends_half_full_chunk():
    text = "短段落第一句话。短段落第二句话。\n\n" + "另一个段落。" * 3
    parts = [text[a:b] for a, b in split_text(text, 30, 0)]
    assert parts == ["短段落第一句话。短段落第二句话。", "另一个段落。" * 3]  # greedy would add one more


def test_long_sentence_is_hard_split_and_english_sentences():
    long = "没有标点的长句子" * 10
    assert all(b - a <= 25 for a, b in split_text(long, 25, 5))
    en = "First sentence here. Second one is here! Third?"
    assert [en[a:b] for a, b in split_text(en, 25, 0)] == ["First sentence here.", "Second one is here!", "Third?"]


def test_token_unit_and_bad_sizes():
    text = "机器学习很有用。" * 20
    spans = split_text(text, 6, 0, unit="tokens")
    assert len(spans) > 1 and all(len(tokenize(text[a:b], stopwords=False)) <= 6 for a, b in spans)
    with pytest.raises(ValueError):
        split_text("x", 10, 10)


def test_split_documents_ids_and_metadata():
    doc = Document(page_content=ZH, metadata={"source": "a.md", "title": "T", "start_index": 100})
    chunks = split_documents([doc], 20, 0)
    again = split_documents([doc], 20, 0)
    assert [c.id for c in chunks] == [c.id for c in again]  # stable
    assert len({c.id for c in chunks}) == len(chunks)
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.metadata["chunk_id"] == c.id and c.metadata["source"] == "a.md" and c.metadata["title"] == "T"
        assert ZH[c.metadata["start_index"] - 100 :].startswith(c.page_content)
    other = split_documents([Document(page_content=ZH, metadata={"source": "b.md"})], 20, 0)
    assert not {c.id for c in other} & {c.id for c in chunks}  # id includes the source
    assert doc.metadata == {"source": "a.md", "title": "T", "start_index": 100}  # input unchanged


def test_duplicate_chunks_get_distinct_ids():
    chunks = split_documents([Document(page_content="同一句。\n\n同一句。", metadata={"source": "x"})], 4, 0)
    assert len(chunks) == 2 and chunks[0].id != chunks[1].id


# ----------------------------------------------------------------------------- loaders
def test_markdown_sections_keep_headings(tmp_path):
    md = tmp_path / "guide.md"
    md.write_text("前言。\n\n# 安装\n步骤一。\n\n## Linux\n```\n# 注释不是标题\n```\n运行命令。\n", encoding="utf-8")
    docs = load_documents(md)
    assert [d.metadata["heading"] for d in docs] == ["", "安装", "安装 > Linux"]
    assert all(d.metadata["title"] == "安装" and d.metadata["source"] == str(md.resolve()) for d in docs)
    text = md.read_text(encoding="utf-8")
    assert all(text[d.metadata["start_index"] :].startswith(d.page_content) for d in docs)


def test_text_gb18030_and_folder_scan(tmp_path):
    (tmp_path / "a.txt").write_bytes("中文编码".encode("gb18030"))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "b.txt").write_text("skip", encoding="utf-8")
    (tmp_path / "c.bin").write_bytes(b"\x00")
    docs = load_documents(tmp_path)
    assert [d.page_content for d in docs] == ["中文编码"]
    with pytest.raises(KnowledgeBaseError, match="unsupported file type"):
        load_documents(tmp_path / "c.bin")


def test_html_docx_pdf(tmp_path):
    html = tmp_path / "p.html"
    html.write_text("<html><head><title>页面</title><style>x{}</style></head><body><h1>标题</h1>"
                    "<p>段落一。</p><script>var a=1</script></body></html>", encoding="utf-8")
    (doc,) = load_documents(html)
    assert doc.metadata["title"] == "页面" and "段落一" in doc.page_content and "var a" not in doc.page_content

    import docx

    d = docx.Document()
    d.add_heading("总览", 1)
    d.add_paragraph("第一段。")
    d.add_heading("细节", 2)
    d.add_paragraph("第二段。")
    d.save(tmp_path / "w.docx")
    docs = load_documents(tmp_path / "w.docx")
    assert [x.metadata["heading"] for x in docs] == ["总览", "总览 > 细节"]

    (tmp_path / "f.pdf").write_bytes(_tiny_pdf("Hello PDF world"))
    (page,) = load_documents(tmp_path / "f.pdf")
    assert "Hello PDF world" in page.page_content and page.metadata["page"] == 1


def test_missing_parser_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "p.html").write_text("<p>x</p>", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "bs4", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'module_ai\[docs\]'"):
        load_documents(tmp_path / "p.html")


def _tiny_pdf(text: str) -> bytes:
    """A minimal one-page PDF with one line of Helvetica text."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
         b"/Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)
