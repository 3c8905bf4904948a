"""Every tutorial notebook runs top to bottom offline (nbclient, kernel python3) without an error.

The notebooks start their own local servers through ``notebooks/_offline.py`` (the same fake DashScope,
fake Ollama, llama.cpp server and fault server the other tests use); ``MODULE_AI_NOTEBOOK_MODE=offline``
is forced so a developer's ``.env`` cannot send CI to real providers.
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
CELL_TIMEOUT_S = 900  # a hang detector, not a speed check: real local models on a loaded 2-core machine
_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_tutorials_are_there():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 6, names
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}*: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(code) >= MIN_CODE_CELLS, f"{path.name}: {len(code)} code cells"
    assert markdown and markdown[0].source.startswith("# "), f"{path.name}: no title cell"
    chinese = sum(len(_CJK.findall(c.source)) for c in markdown)
    assert chinese >= 300, f"{path.name}: markdown has {chinese} Chinese characters"
    counts = [c.get("execution_count") for c in code]
    if any(c.get("outputs") or n is not None for c, n in zip(code, counts)):  # committed with a real run's outputs
        assert counts == list(range(1, len(code) + 1)), f"{path.name}: outputs must come from one top-to-bottom run"
        assert not [o for c in code for o in c.get("outputs", []) if o.output_type == "error"], f"{path.name}: error output"
    assert "_offline" in code[0].source and "setup(" in code[0].source, f"{path.name}: first cell must call setup()"


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
    first = "".join(o.get("text", "") for o in nb.cells[1].get("outputs", []) if o.output_type == "stream")
    assert "offline" in first, f"{path.name}: the first cell must print the active mode, got {first!r}"
