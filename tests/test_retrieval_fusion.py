"""Fusion functions against hand-computed values; inputs never mutated; array form agrees."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from module_ai.retrieval.fusion import (
    RANK_BASE,
    RRF_K,
    fuse_arrays,
    normalize_scores,
    rrf_fuse,
    weighted_fuse,
)


def test_rrf_constants_are_documented_defaults():
    assert RRF_K == 60
    assert RANK_BASE == 1


def test_rrf_matches_hand_computed_scores():
    bm25 = ["a", "b", "c"]
    dense = ["c", "a", "d"]
    fused = dict(rrf_fuse([bm25, dense]))
    # a: 1/61 + 1/62, b: 1/62, c: 1/63 + 1/61, d: 1/63
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 63)
    assert [k for k, _ in rrf_fuse([bm25, dense])] == ["a", "c", "b", "d"]


def test_rrf_weights_and_k():
    out = rrf_fuse([["x", "y"], ["y", "x"]], weights=[3.0, 1.0], k=0)
    # x: 3/1 + 1/2 = 3.5 ; y: 3/2 + 1/1 = 2.5
    assert out == [("x", 3.5), ("y", 2.5)]
    assert rrf_fuse([["x", "y"], ["y", "x"]], weights=[1.0, 1.0], k=0)[0][1] == pytest.approx(1.5)


def test_rrf_ties_keep_first_seen_order_and_limit():
    out = rrf_fuse([["p", "q"], ["q", "p"]])
    assert [k for k, _ in out] == ["p", "q"]  # equal scores: first seen first
    assert len(rrf_fuse([["a", "b", "c"]], limit=2)) == 2


def test_rrf_counts_duplicates_once():
    assert dict(rrf_fuse([["a", "a", "b"]], k=0)) == {"a": 1.0, "b": pytest.approx(1 / 3)}


def test_weighted_minmax_hand_computed():
    bm25 = {"a": 10.0, "b": 5.0, "c": 0.0}
    dense = {"b": 0.9, "c": 0.5, "d": 0.1}
    out = dict(weighted_fuse([bm25, dense], [0.6, 0.4], norm="minmax"))
    # bm25 norm: a 1, b .5, c 0, d missing -> 0 ; dense norm: b 1, c .5, d 0, a missing -> 0
    assert out["a"] == pytest.approx(0.6)
    assert out["b"] == pytest.approx(0.6 * 0.5 + 0.4 * 1.0)
    assert out["c"] == pytest.approx(0.4 * 0.5)
    assert out["d"] == pytest.approx(0.0)
    assert [k for k, _ in weighted_fuse([bm25, dense], [0.6, 0.4])] == ["b", "a", "c", "d"]


def test_weighted_zscore_hand_computed():
    s = {"a": 1.0, "b": 2.0, "c": 3.0}
    z = normalize_scores(s, "zscore")
    std = math.sqrt(2 / 3)
    assert z == pytest.approx({"a": -1 / std, "b": 0.0, "c": 1 / std})
    out = dict(weighted_fuse([s, {"d": 5.0, "a": 1.0}], [1.0, 1.0], norm="zscore"))
    # second list: d +1, a -1; missing b, c get that list's lowest z (-1)
    assert out["a"] == pytest.approx(-1 / std - 1)
    assert out["c"] == pytest.approx(1 / std - 1)
    assert out["d"] == pytest.approx(-1 / std + 1)  # missing from the first list: its lowest z


def test_constant_scores_normalize_to_zero():
    assert normalize_scores({"a": 2.0, "b": 2.0}, "minmax") == {"a": 0.0, "b": 0.0}
    assert normalize_scores({"a": 2.0, "b": 2.0}, "zscore") == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError):
        normalize_scores({"a": 1.0}, "l2")


def test_inputs_are_not_mutated():
    rankings = [["a", "b"], ["b", "c"]]
    scores = [{"a": 1.0, "b": 0.5}, {"b": 2.0, "c": 1.0}]
    weights = [0.5, 0.5]
    snapshot = copy.deepcopy((rankings, scores, weights))
    rrf_fuse(rankings, weights)
    weighted_fuse(scores, weights, norm="zscore")
    normalize_scores(scores[0])
    assert (rankings, scores, weights) == snapshot


def test_weight_count_must_match():
    with pytest.raises(ValueError):
        rrf_fuse([["a"], ["b"]], weights=[1.0])


@pytest.mark.parametrize("norm", ["minmax", "zscore"])
def test_array_form_agrees_with_pure_functions(norm):
    rng = np.random.default_rng(1)
    ids = list(range(12))
    b_rows, d_rows = ids[:8], ids[4:]
    b = {i: float(rng.random() * 10) for i in b_rows}
    d = {i: float(rng.random()) for i in d_rows}
    b_rank = {i: r for r, i in enumerate(sorted(b, key=b.__getitem__, reverse=True), 1)}
    d_rank = {i: r for r, i in enumerate(sorted(d, key=d.__getitem__, reverse=True), 1)}

    def arr(m, miss):
        return np.array([[m.get(i, miss) for i in ids]], dtype=float)

    got_w = fuse_arrays([arr(b, np.nan), arr(d, np.nan)], [arr(b_rank, 0), arr(d_rank, 0)], [0.7, 0.3],
                        method="weighted", norm=norm)[0]
    want_w = dict(weighted_fuse([b, d], [0.7, 0.3], norm=norm))
    assert got_w == pytest.approx([want_w[i] for i in ids])
    got_r = fuse_arrays([arr(b, np.nan), arr(d, np.nan)], [arr(b_rank, 0), arr(d_rank, 0)], [0.7, 0.3], method="rrf")[0]
    want_r = dict(rrf_fuse([sorted(b_rank, key=b_rank.get), sorted(d_rank, key=d_rank.get)], [0.7, 0.3]))
    assert got_r == pytest.approx([want_r[i] for i in ids])


def test_array_padding_is_minus_inf():
    s = np.array([[1.0, 2.0, np.nan]])
    r = np.array([[2, 1, 0]])
    out = fuse_arrays([s], [r], [1.0], method="weighted", valid=np.array([[True, True, False]]))
    assert out[0, 2] == -np.inf and out[0, 1] == 1.0 and out[0, 0] == 0.0
