"""Embedding cache compaction: small shards merged into bounded ones, every cached vector kept."""

from __future__ import annotations

import numpy as np
import pytest

from module_ai.retrieval import embedding_cache
from module_ai.retrieval.embedding_cache import EmbeddingCache


def _fill(cache: EmbeddingCache, batches: int, rows: int, rng) -> list[str]:
    hashes = []
    for b in range(batches):
        batch = [f"{b:016x}{r:016x}" for r in range(rows)]
        cache.put_many("m", 0, batch, rng.standard_normal((rows, 8)).astype(np.float32))
        hashes += batch
    return hashes


def test_compact_merges_into_bounded_shards_and_keeps_every_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_cache, "MERGED_ROWS", 50)
    cache, rng = EmbeddingCache(tmp_path), np.random.default_rng(0)
    hashes = _fill(cache, 60, 7, rng)
    before = cache.get_many("m", 0, hashes)
    assert len(cache.shards("m", 0)) == 60 and cache.compact("m", 0)
    sizes = [k.stat().st_size // 16 for k in cache.shards("m", 0)]
    assert sum(sizes) == 420 and len(sizes) == 8 and max(sizes) <= 50 + 7  # 7 full groups + the rest
    assert len(list((tmp_path).rglob("*.npy"))) == len(sizes)  # the small shards are gone
    for reader in (cache, EmbeddingCache(tmp_path)):  # in memory and reloaded from disk
        after = reader.get_many("m", 0, hashes)
        assert after.keys() == before.keys() and all(np.array_equal(after[h], before[h]) for h in hashes)
    assert not cache.compact("m", 0)  # 8 shards: nothing to do


def test_compact_keeps_the_newest_vector_of_a_text_cached_twice(tmp_path):
    cache = EmbeddingCache(tmp_path)
    for i in range(40):
        cache.put_many("m", 0, ["a" * 32, f"{i:032x}"], np.full((2, 4), i, dtype=np.float32))
    assert cache.compact("m", 0)
    fresh = EmbeddingCache(tmp_path)
    assert fresh.get_many("m", 0, ["a" * 32])["a" * 32].tolist() == [39.0] * 4
    assert sum(k.stat().st_size // 16 for k in fresh.shards("m", 0)) == 41  # one row per distinct text


def test_compact_drops_an_unreadable_shard(tmp_path):
    cache, rng = EmbeddingCache(tmp_path), np.random.default_rng(1)
    hashes = _fill(cache, 40, 3, rng)
    broken = cache.shards("m", 0)[5]
    broken.with_suffix(".npy").write_bytes(b"not an npy file")
    lost = {broken.read_bytes()[i : i + 16].hex() for i in range(0, 48, 16)}
    assert cache.compact("m", 0)
    found = EmbeddingCache(tmp_path).get_many("m", 0, hashes)
    assert set(found) == set(hashes) - lost


@pytest.mark.parametrize("shards", [0, 1, 32])
def test_compact_waits_for_enough_small_shards(tmp_path, shards):
    cache = EmbeddingCache(tmp_path)
    _fill(cache, shards, 2, np.random.default_rng(2))
    assert not cache.compact("m", 0) and len(cache.shards("m", 0)) == shards
