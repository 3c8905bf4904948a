"""A vectorised construction of a bm25s index, equal array for array to ``bm25s.BM25.index``.

bm25s builds its score matrix with a Python loop over documents (a ``Counter`` and a set
intersection per document); at 100k chunks that loop is most of the index build. Here the same
numbers come from NumPy over one flat array of token ids:

* term frequencies: sort the ``(token, document)`` keys once; runs of equal keys are the counts,
  and the sorted keys are already the CSC order bm25s produces (columns = tokens, rows ascending);
* document frequencies: the number of distinct keys per token;
* idf: bm25s's own scorer per token (its ``math.log``; NumPy's ``log`` may differ in the last bit);
* scores: bm25s's per-document expression ``idf * tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf)``
  evaluated element-wise with the same operand types, rounded to the index dtype at the end.

Only the configuration module_ai uses (Lucene/Robertson BM25, NumPy CSC backend) takes this path;
any other falls back to ``BM25.index``. ``tests/test_retrieval_build.py`` checks equality with bm25s.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from module_ai.errors import require

__all__ = ["index_tokens"]

_FAST_METHODS = ("lucene", "robertson")


def index_tokens(tokens: Sequence[Sequence[str]]) -> Any:
    """A ``bm25s.BM25`` (default settings) over per-chunk token lists; vocabulary in first-seen order."""
    import numpy as np

    bm25s = require("bm25s", "rag")
    vocab: dict[str, int] = defaultdict(itertools.count().__next__)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    total = int(lengths.sum())
    flat = np.fromiter(map(vocab.__getitem__, itertools.chain.from_iterable(tokens)),
                       dtype=np.int32 if total < 2**31 - 1 else np.int64, count=total)
    vocab[""]  # the empty token bm25s expects (scores all-unknown queries as zero)
    vocab = dict(vocab)
    index = bm25s.BM25()
    fast = index.method in _FAST_METHODS and index.idf_method in _FAST_METHODS and index.csc_backend == "numpy"
    if not fast:
        ends = np.cumsum(lengths).tolist()
        ids = [flat[a:b].tolist() for a, b in zip([0, *ends[:-1]], ends)]
        index.index((ids, vocab), show_progress=False)
        return index
    holder = [flat]  # _scores takes the only reference and frees the array as soon as it can
    del flat
    index.nonoccurrence_array = None  # what BM25.index sets for these methods, in the same order
    index.scores = _scores(index, holder, lengths, len(vocab))
    index.vocab_dict = vocab
    index.unique_token_ids_set = set(vocab.values())
    return index


def _scores(index: Any, holder: list[Any], lengths: Any, n_vocab: int) -> dict[str, Any]:
    """bm25s's ``scores`` dict (CSC ``data``/``indices``/``indptr``, ``num_docs``) from the flat
    token ids in ``holder`` (emptied: the ids are turned into sort keys in place)."""
    import numpy as np

    n_docs = max(len(lengths), 1)
    small = n_vocab * n_docs < _INT32_KEYS  # (token, document) fits one int32: half the memory of every step
    keys = holder.pop()
    if keys.dtype != (np.int32 if small else np.int64):
        keys = keys.astype(np.int64)
    keys *= n_docs  # in place: no second array of all tokens
    keys += np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    keys.sort()
    first = np.empty(keys.size, dtype=bool)  # where a run of equal keys starts
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    tf = _run_lengths(np.flatnonzero(first), keys.size, index.dtype)
    keys = keys[first]
    del first
    rows = (keys % n_docs).astype(index.int_dtype)
    keys //= n_docs
    cols = keys if keys.dtype == np.int32 or n_vocab >= 2**31 else keys.astype(np.int32)
    del keys
    df = np.bincount(cols, minlength=n_vocab)
    return {"data": _bm25_data(index, tf, rows, cols, df, lengths), "indices": rows,
            "indptr": np.concatenate(([0], np.cumsum(df))).astype(np.int64), "num_docs": len(lengths)}


def _run_lengths(starts: Any, total: int, dtype: Any) -> Any:
    """Lengths of the runs beginning at ``starts`` (the last ends at ``total``), in blocks."""
    import numpy as np

    out = np.empty(starts.size, dtype=dtype)
    for s in range(0, starts.size, _BLOCK):
        block = starts[s : s + _BLOCK + 1]
        out[s : s + block.size - 1] = np.diff(block)
    if starts.size:
        out[-1] = total - starts[-1]
    return out


def _bm25_data(index: Any, tf: Any, rows: Any, cols: Any, df: Any, lengths: Any) -> Any:
    """Per (document, token) score, as bm25s's loop computes it, in blocks (small temporaries)."""
    import numpy as np
    from bm25s.scoring import _build_idf_array, _select_idf_scorer

    idf = _build_idf_array(dict(enumerate(df.tolist())), len(lengths), _select_idf_scorer(index.idf_method),
                           index.dtype)
    avg_len = lengths.mean()  # as bm25s: the mean of an int64 array of document lengths
    work = np.result_type(np.float64(avg_len), tf)  # what bm25s's scalar-with-array arithmetic promotes to
    k1, b = index.k1, index.b
    doc_norm = k1 * ((1 - b) + b * lengths / avg_len) if len(lengths) and avg_len else np.zeros(len(lengths))
    data = np.empty(tf.size, dtype=index.dtype)
    for s in range(0, tf.size, _BLOCK):
        t, block = tf[s : s + _BLOCK], slice(s, s + _BLOCK)
        data[block] = idf[cols[block]] * (t / (doc_norm[rows[block]].astype(work) + t))
    return data


_BLOCK = 1 << 18
"""Pairs per step of the score computation."""

_INT32_KEYS = 2**31
"""Below this many (token, document) combinations the sort keys are int32, else int64."""
