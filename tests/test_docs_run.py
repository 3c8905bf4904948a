"""Docs that run: every Python block of README.md, as written, and the package's doctests.

README blocks run one per fresh interpreter (so each must define what it uses) in a folder holding a copy
of ``configs/`` whose provider URLs point at the local fake DashScope (same paths as the real service),
with ``DASHSCOPE_API_KEY`` set to the fake's key. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
DASHSCOPE = "https://dashscope.aliyuncs.com"


def readme_blocks() -> list[str]:
    return _BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_has_python_blocks():
    assert len(readme_blocks()) >= 4


@pytest.fixture()
def workdir(tmp_path, dashscope_server):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs)
    for path in configs.iterdir():
        path.write_text(path.read_text(encoding="utf-8").replace(DASHSCOPE, dashscope_server.url),
                        encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_readme_python_block_runs_as_written(number, workdir, test_api_key, dashscope_server):
    code = readme_blocks()[number]
    env = {**os.environ, "DASHSCOPE_API_KEY": test_api_key, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODULE_AI_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
                          timeout=300, env=env, check=False)
    assert proc.returncode == 0, f"README block {number + 1} failed:\n{code}\n{proc.stderr[-3000:]}"
    assert dashscope_server.count > 0  # it really talked to the (fake) provider


def test_package_doctests_pass():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules",
                           "module_ai", "-o", "addopts=", "--rootdir", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout), proc.stdout[-500:]
