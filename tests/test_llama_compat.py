"""The notebooks' llama.cpp AMX workaround reaches child processes (the llama.cpp server) through
``notebooks/_llama_site/sitecustomize.py``, which runs the one patch of ``notebooks/_llama_compat.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SITE_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "_llama_site"
_SHOW = ("import llama_cpp.llama_cpp as lib; f = lib.llama_model_default_params; "
         "print(f().use_extra_bufts, getattr(f, '_module_ai_no_extra_bufts', False))")


@pytest.mark.parametrize("flag, expected", [("1", "False True"), ("0", "True False")])
def test_a_child_process_loads_without_extra_buffers_only_when_the_parent_says_so(flag, expected):
    env = {**os.environ, "PYTHONPATH": str(SITE_DIR), "MODULE_AI_LLAMA_NO_EXTRA_BUFTS": flag}
    run = subprocess.run([sys.executable, "-c", _SHOW], check=False, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == expected.split()
