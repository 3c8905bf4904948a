"""Hostile config files: every one ends in one clean ConfigError naming the file, none hangs.

The corpus is ``tests/data/bad_configs/hostile/`` plus files that cannot live in git (FIFOs, device
links, binary encodings, huge nesting), made here. Each case is loaded by ``load_registry`` in a
subprocess with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from module_ai import ConfigError
from module_ai.config import load_config_file

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = Path(__file__).parent / "data" / "bad_configs" / "hostile"
OK = {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b"}
TIMEOUT = 60

PROBE = """
import sys
from module_ai import ConfigError, load_registry
try:
    load_registry(sys.argv[1], builtin=False)
except ConfigError as exc:
    print("CONFIGERROR", str(exc))
else:
    print("LOADED")
"""


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo.json")
    return d / "fifo.json"


def _link(target: str, name: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).symlink_to(target)
        return d / name
    return make


def _write(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data() if callable(data) else data)
        return d / name
    return make


def _folder_with_fifo(d: Path) -> Path:
    (d / "cfg").mkdir()
    (d / "cfg" / "good.json").write_text(json.dumps(OK))
    os.mkfifo(d / "cfg" / "evil.json")
    return d / "cfg"


def _under_a_file(d: Path) -> Path:
    (d / "plain.json").write_text(json.dumps(OK))
    return d / "plain.json" / "sub"


GENERATED: dict[str, Callable[[Path], Path]] = {
    "fifo.json": _fifo,
    "folder_with_fifo": _folder_with_fifo,
    "dev_zero.yaml": _link("/dev/zero", "dev_zero.yaml"),
    "dev_null.json": _link("/dev/null", "dev_null.json"),
    "dev_zero_as_folder": _link("/dev/zero", "zero"),
    "gzip.json": _write("gzip.json", lambda: gzip.compress(json.dumps(OK).encode())),
    "utf16.json": _write("utf16.json", json.dumps(OK).encode("utf-16")),
    "utf16be_nobom.yaml": _write("utf16be_nobom.yaml", "model: m\n".encode("utf-16-be")),
    "latin1.yaml": _write("latin1.yaml", "model_type: chat\nserver_type: ollama\nmodel: caf\xe9\n".encode("latin-1")),
    "binary.json": _write("binary.json", bytes(range(256)) * 4),
    "deep_nesting.json": _write("deep_nesting.json", b'{"options": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
    "deep_nesting.yaml": _write("deep_nesting.yaml", b"options: " + b"[" * 200_000 + b"]" * 200_000),
    "deep_options.json": _write("deep_options.json", json.dumps({**OK, "options": json.loads("[" * 200 + "]" * 200)})
                                .encode()),
    "too_big.yaml": _write("too_big.yaml", b"model: m\n" + b"# padding\n" * 300_000),
    "under_a_file": _under_a_file,
}
STATIC = sorted(p.name for p in HOSTILE.iterdir())
CASES = STATIC + sorted(GENERATED)


def _case_path(name: str, tmp_path: Path) -> Path:
    return GENERATED[name](tmp_path) if name in GENERATED else HOSTILE / name


@pytest.mark.parametrize("name", CASES)
def test_hostile_config_is_one_clean_config_error(name, tmp_path):
    path = _case_path(name, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], check=False, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: loading hung for {TIMEOUT} s")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{name}: traceback\n{proc.stderr[-2000:]}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("CONFIGERROR "), f"{name}: {proc.stdout!r}"
    shown = path.name if name != "folder_with_fifo" else "evil.json"
    assert shown in lines[0] or name == "under_a_file", lines[0]


def test_corpus_size():
    assert len(CASES) >= 50


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(OK).encode())
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfmodel_type: chat\nserver_type: ollama\nmodel: m\n")
    assert load_config_file(tmp_path / "bom.json")["bom"].model == "qwen3:4b"
    assert load_config_file(tmp_path / "bom.yaml")["bom"].model == "m"


def test_yaml_syntax_error_is_one_line_with_line_and_column():
    with pytest.raises(ConfigError) as err:
        load_config_file(HOSTILE / "syntax_error.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(HOSTILE / "syntax_error.yaml")) and "line 4, column 4" in message


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    (tmp_path / "merge.yaml").write_text(
        "base: &base {model_type: chat, server_type: ollama, model: m, timeout: 10}\n"
        "models:\n  fast:\n    <<: *base\n    timeout: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top-level key.*base"):  # anchors live inside models, not beside
        load_config_file(tmp_path / "merge.yaml")
    (tmp_path / "merge.yaml").write_text(
        "models:\n  base: &base {model_type: chat, server_type: ollama, model: m, timeout: 10}\n"
        "  fast:\n    <<: *base\n    timeout: 5\n", encoding="utf-8")
    assert load_config_file(tmp_path / "merge.yaml")["fast"].timeout == 5


@pytest.mark.parametrize(("field", "value"), [("timeout", float("inf")), ("pay_in", float("nan")),
                                              ("price_unit", True), ("max_batch", False), ("timeout", 1e308)])
def test_python_values_are_checked_too(field, value):
    from module_ai import ModelConfig

    with pytest.raises(ValueError):
        ModelConfig(**OK, **{field: value})
