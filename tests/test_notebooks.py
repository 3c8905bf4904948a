"""Every tutorial notebook runs top to bottom offline (nbclient, kernel python3) without an error, and is
committed WITH the outputs of such a run (so a learner sees real answers before running anything).

Offline, ``notebooks/_offline.py`` uses the real local models (the built-in ``qwen2.5-coder-0.5b`` GGUF
in-process and ``multilingual-e5-small``); local test servers remain only for lessons about a
provider's protocol (simulated DashScope, the fault-injecting API of notebook 06).
``MODULE_AI_NOTEBOOK_MODE=offline`` is forced so a developer's ``.env`` cannot send CI to real providers.
Re-run and save them with ``python scripts/run_notebooks.py``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MIN_CODE_CELLS = 8
CELL_TIMEOUT_S = 1800  # the real local models on a busy 2-core machine
_CJK = re.compile(r"[\u4e00-\u9fff]")
_REAL_MODELS = ("qwen2.5-coder-0.5b", "multilingual-e5-small")
_TINY = re.compile(r"tiny[_.]gguf|make_tiny|tiny-llama", re.IGNORECASE)


def test_the_tutorials_are_there():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 6, names
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}*: {names}"


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _uses_real_models(nb) -> bool:
    text = "".join(_stream_text(c) for c in nb.cells if c.cell_type == "code")
    return any(name in text for name in _REAL_MODELS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_with_offline_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(code) >= MIN_CODE_CELLS, f"{path.name}: {len(code)} code cells"
    assert markdown and markdown[0].source.startswith("# "), f"{path.name}: no title cell"
    chinese = sum(len(_CJK.findall(c.source)) for c in markdown)
    assert chinese >= 300, f"{path.name}: markdown has {chinese} Chinese characters"
    assert "_offline" in code[0].source and "setup(" in code[0].source, f"{path.name}: first cell must call setup()"
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}: run it top to bottom in a fresh kernel and commit the outputs "
        "(python scripts/run_notebooks.py)")
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    assert "offline" in _stream_text(code[0]), f"{path.name}: the committed run must be the offline one"
    with_output = sum(1 for c in code if c.get("outputs"))
    assert with_output >= 0.7 * len(code), f"{path.name}: only {with_output} of {len(code)} code cells show output"
    tiny = [c.source[:60] for c in code if _TINY.search(c.source) or _TINY.search(_stream_text(c))]
    assert not tiny, f"{path.name}: the random tiny GGUF has no place in the tutorials: {tiny}"
    assert _uses_real_models(nb), f"{path.name}: the committed outputs name none of the local models {_REAL_MODELS}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_offline(path: Path, monkeypatch):
    monkeypatch.setenv("MODULE_AI_NOTEBOOK_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("MODULE_AI_CONFIG", raising=False)
    monkeypatch.delenv("MODULE_AI_USAGE_LOG", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # the message holds the cell and traceback
        pytest.fail(f"{path.name} failed:\n{str(exc)[-4000:]}", pytrace=False)
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]
    first = _stream_text(nb.cells[1])
    assert "offline" in first, f"{path.name}: the first cell must print the active mode, got {first!r}"
    assert _uses_real_models(nb), f"{path.name}: offline, the outputs name none of the local models {_REAL_MODELS}"
