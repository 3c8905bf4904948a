"""The fast paths of the index build give exactly what the general paths give.

Chunk ids and metadata must not move (an unchanged file must stay a no-op on re-index), tokens must
equal the regex tokenizer's, the vectorised BM25 index must equal bm25s's own, and the in-place
normalization must equal the whole-matrix one bit for bit.
"""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
from langchain_core.documents import Document

from module_ai.retrieval import KnowledgeBase, split_documents, tokenize
from module_ai.retrieval._testing import HashingEmbeddings
from module_ai.retrieval.embedded import bm25_build, index
from module_ai.retrieval.splitter import _bare_lines, bare_heading, iter_chunks
from module_ai.retrieval.tokenizer import _WORDS, _word_memo

ZH = "第一句话在这里。第二句话也在这里！第三句话呢？\n\n新段落开始了。最后一句。"


def _mixed_docs() -> list[Document]:
    """Short and long, Chinese and English, headings, separators, duplicates, no source, blank."""
    rng = random.Random(7)
    words = ["alpha", "Beta", "gamma_delta", "数据", "模型。", "end.", "\n", "\n\n", "# 标题\n", "---\n", "x" * 30]
    docs = [Document(page_content="".join(rng.choice(words) + rng.choice([" ", ""]) for _ in range(rng.randint(0, 40))),
                     metadata={"source": f"s{i % 7}", "n": i}) for i in range(120)]
    docs += [
        Document(page_content="# 标题\n\n---", metadata={"source": "md"}),
        Document(page_content="正文内容。", metadata={"source": "md", "heading": "章节"}),
        Document(page_content="___", metadata={"source": "u"}),
        Document(page_content="snake_case here", metadata={"source": "u"}),
        Document(page_content="same text", metadata={"source": "dup"}),
        Document(page_content="same text", metadata={"source": "dup"}),
        Document(page_content="  padded  \n\n", metadata={"source": "pad", "start_index": 7}),
        Document(page_content=" " * 70 + "fits once stripped" + " " * 30, metadata={"source": "pad"}),
        Document(page_content="no source at all"),
        Document(page_content=""),
        Document(page_content=" \n\t "),
        Document(page_content="a" * 40 + "\n\n" + "b" * 40, metadata={"source": "para"}),  # 82 chars
        Document(page_content=ZH * 3, metadata={"source": "long"}),
    ]
    return docs


def _rows(chunks):
    return [(c.id, c.page_content, c.metadata) for c in chunks]


@pytest.mark.parametrize("size", [20, 60, 82, 4000])
def test_one_chunk_fast_path_equals_full_path(size):
    docs = _mixed_docs()
    fast = split_documents(docs, size, size // 4)
    full = split_documents(docs, size, size // 4, length_function=len)  # a custom length: never the fast path
    assert _rows(fast) == _rows(full) and len(fast) > 20
    assert [(cid, text, meta) for text, meta, cid in iter_chunks(docs, size, size // 4)] == _rows(fast)


def test_bare_heading_quick_check_equals_line_scan():
    rng = random.Random(3)
    alphabet = ["#", "# ", "_", "-", "*", "=", "~", " ", "\n", "a", "字", "|", "`", ".", "\u2028"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    assert [bare_heading(t) for t in texts] == [_bare_lines(t) for t in texts]
    assert {bare_heading(t) is None for t in texts} == {True, False}


def test_bad_sizes_still_raise_on_the_fast_path():
    with pytest.raises(ValueError):
        split_documents([Document(page_content="short", metadata={"source": "a"})], 10, 10)


def test_ascii_tokens_equal_the_regex_path():
    rng = random.Random(5)
    pool = string.ascii_letters + string.digits + string.punctuation + " \t\n\x00\x1f\x7f_"
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    texts += ["The Running dogs' studies of COVID-19 PATIENTS ran quickly", "snake_case and_underscores __x__"]
    for stem in (True, False):
        for stopwords in (True, False):
            memo = _word_memo(stem, stopwords)
            for text in texts:
                regex_path = [w for w in map(memo.__getitem__, _WORDS.findall(text)) if w]
                assert tokenize(text, stem=stem, stopwords=stopwords) == regex_path, text


def _bm25s_index(tokens):
    """bm25s's own index over the same vocabulary order (first seen, then the empty token)."""
    import bm25s

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in tokens]
    vocab.setdefault("", len(vocab))
    ref = bm25s.BM25()
    ref.index((ids, vocab), show_progress=False)
    return ref


@pytest.mark.parametrize("keys", ["int32", "int64", "bm25s_loop"])
@pytest.mark.parametrize("corpus", ["mixed", "one_doc", "empty_docs"])
def test_vectorised_bm25_equals_bm25s(corpus, keys, tmp_path, monkeypatch):
    monkeypatch.setattr(bm25_build, "_BLOCK", 7)  # many blocks
    if keys == "int64":
        monkeypatch.setattr(bm25_build, "_INT32_KEYS", 0)  # as for a large vocabulary times many chunks
    if keys == "bm25s_loop":
        monkeypatch.setattr(bm25_build, "_FAST_METHODS", ())  # the fallback for other bm25s settings
    texts = {"mixed": [d.page_content for d in _mixed_docs()] + ["用Python做机器学习", "机器学习 机器学习 model models"],
             "one_doc": ["only only only one"], "empty_docs": ["", "the of", "word"]}[corpus]
    tokens = [tokenize(t) for t in texts]
    ours, ref = index.build_bm25(tokens), _bm25s_index(tokens)
    assert set(vars(ours)) == set(vars(ref)) and ours.vocab_dict == ref.vocab_dict
    assert list(ours.vocab_dict) == list(ref.vocab_dict)
    for key in ("data", "indices", "indptr"):
        assert ours.scores[key].dtype == ref.scores[key].dtype
        assert ours.scores[key].tobytes() == ref.scores[key].tobytes(), key
    ours.save(str(tmp_path / "ours"), show_progress=False)
    ref.save(str(tmp_path / "ref"), show_progress=False)
    for f in sorted((tmp_path / "ref").iterdir()):
        assert (tmp_path / "ours" / f.name).read_bytes() == f.read_bytes(), f.name
    query = [ref.vocab_dict[t] for t in tokenize("机器学习 model only word") if t in ref.vocab_dict]
    assert np.array_equal(ours.get_scores_from_ids(query), ref.get_scores_from_ids(query))


def test_blockwise_normalization_is_bit_identical(monkeypatch):
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((50, 17)).astype(np.float32) * rng.uniform(0.001, 1000, (50, 1)).astype(np.float32)
    mat[[3, 20]] = 0
    whole = index.normalize_rows(mat)  # not in place: the whole matrix at once
    monkeypatch.setattr(index, "_NORM_BLOCK", 4)
    blocks = index.normalize_rows(mat.copy(), inplace=True)
    assert blocks.tobytes() == whole.tobytes() and not blocks[3].any()


def test_build_rows_equal_split_documents_and_reindex_is_a_noop(tmp_path):
    docs, emb = _mixed_docs(), HashingEmbeddings(size=16)
    kb = KnowledgeBase.build(docs, tmp_path / "kb", emb, chunk_size=60, chunk_overlap=15, show_progress=False)
    by_source: dict[str, list] = {}  # the index keeps each source's chunks together, sources in first-seen order
    for chunk in split_documents(docs, 60, 15):
        by_source.setdefault(chunk.metadata["source"], []).append(chunk)
    assert _rows(kb.documents()) == _rows([c for chunks in by_source.values() for c in chunks])
    calls = emb.document_calls
    report = kb.add_documents(docs)
    assert report.embedded == 0 and report.chunks_added == 0 and emb.document_calls == calls
    assert report.generation == kb.manifest["generation"]


def test_chunk_lines_equal_the_json_encoder():
    import json

    from module_ai.retrieval.embedded.store import record_line

    odd = 'quote " backslash \\ tab \t nl \n ctl \x00\x1f del \x7f ls \u2028 lone \ud800 emoji 🙂 中文'
    records = [
        {"id": "a1", "text": odd, "metadata": {"source": odd, "n": 1, "f": 0.5, "none": None, "l": [1, "x"]}},
        {"id": "", "text": "", "metadata": {}},
        {"text": "keys in another order", "id": "b", "metadata": {}},  # the general encoder
        {"id": "c", "text": "extra key", "metadata": {}, "x": 1},
    ]
    encode = json.JSONEncoder(ensure_ascii=False).encode
    assert [record_line(r) for r in records] == [encode(r) + "\n" for r in records]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_embedding_rows_convert_like_numpy():
    from module_ai.retrieval.embedding import _float32_rows

    rng = np.random.default_rng(4)
    doubles = (rng.standard_normal((64, 33)) * 10.0 ** rng.integers(-40, 40, (64, 1))).tolist()
    doubles[3][5], doubles[7][0] = float("inf"), 1e300  # overflow to inf in float32, as numpy does
    for rows in (doubles, [[1, 2], [3, 4]], [[True, 0.5]], [[1.0, None]], rng.standard_normal((3, 4))):
        expected = np.asarray(rows, dtype=np.float32)
        got = _float32_rows(rows)
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()
    for ragged in ([[1.0, 2.0], [3.0]], [[1.0], [2.0, 3.0]]):  # a short row, a long row: numpy's error
        with pytest.raises(ValueError):
            _float32_rows(ragged)


def test_bench_retrieval_measures_builds_of_chosen_systems():
    """The benchmark's build-only mode (fresh processes, ratios of medians) runs end to end."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_retrieval.py"
    out = subprocess.run([sys.executable, str(script), "--sizes", "300", "--builds", "1", "--systems", "floor,ours",
                          "--skip-latency"], capture_output=True, text=True, check=True, timeout=300).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("floor ", "ours "))}
    assert set(rows) == {"floor", "ours"} and not any(line.startswith("stock") for line in out.splitlines())
    assert all(float(r[-3]) > 0 and float(r[-2]) > 0 for r in rows.values())  # build s, peak MiB measured
    assert "build ours/floor x" in out and "peak RSS ours/floor x" in out
