"""Execute the tutorial notebooks offline, top to bottom, and save them WITH their outputs.

    python scripts/run_notebooks.py              # every notebooks/*.ipynb
    python scripts/run_notebooks.py 04 05        # only those whose name starts with 04 / 05

Needs the ``notebooks`` extra (``pip install -e ".[notebooks]"``). Each notebook runs in a fresh
``python3`` kernel with ``MODULE_AI_NOTEBOOK_MODE=offline`` (the real local models); the time each
took is printed. A failing cell stops that notebook (its file is left unchanged, the error printed) and
the next one runs; the exit code is 1 if any failed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 1800


def run(path: Path) -> float:
    """Execute one notebook in place; returns the seconds it took."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    os.environ["MODULE_AI_NOTEBOOK_MODE"] = "offline"
    os.environ.pop("MODULE_AI_CONFIG", None)
    os.environ.pop("MODULE_AI_USAGE_LOG", None)
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a) for a in argv)]
    import nbclient

    failed = 0
    for path in paths:
        try:
            print(f"{path.name}: {run(path):.1f} s", flush=True)
        except nbclient.exceptions.CellExecutionError as exc:
            failed += 1
            print(f"{path.name}: FAILED\n{str(exc)[-3000:]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
