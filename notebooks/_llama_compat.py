"""Notebook helper: keep llama.cpp off Intel AMX where AMX crashes it.

Measured on this project's machine (Xeon with ``amx_tile``/``amx_int8``, a Firecracker VM, Linux
6.18, llama-cpp-python 0.3.36 built from source with native CPU flags): the first Q4_K_M matrix
multiply dies with SIGILL ("Illegal instruction"; dmesg: ``invalid opcode ... in libggml-cpu.so``, the
instruction is ``tilezero``), even after ``arch_prctl(ARCH_REQ_XCOMP_PERM)``. ggml uses AMX through an
"extra buffer type"; loading with ``llama_model_params.use_extra_bufts = False`` avoids it (and also
the CPU repack buffers, so matmuls are somewhat slower).

:func:`apply` probes once per llama-cpp-python build (a child process multiplies a few tokens; the
answer is cached in ``~/.cache/module_ai/llama_amx_probe.json``) and, only if the probe crashed,
patches ``llama_cpp`` in this process. ``SITE_DIR`` holds a ``sitecustomize.py`` doing the same for
child processes (the llama.cpp server): put it first on their ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "_llama_site"
ENV_FLAG = "MODULE_AI_LLAMA_NO_EXTRA_BUFTS"
_PROBE = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
llm.create_completion("The Great Wall of China is a series of fortifications built across", max_tokens=1)
"""


def _has_amx() -> bool:
    try:
        return "amx_" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


def _build_key() -> str:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    stamps = sorted((p.name, int(p.stat().st_mtime)) for p in lib.glob("libggml-cpu*")) if lib.is_dir() else []
    return f"{llama_cpp.__version__}:{stamps}"


def _amx_crashes(gguf: Path) -> bool:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "module_ai" / "llama_amx_probe.json"
    key = _build_key()
    try:
        known = json.loads(cache.read_text())
        if known.get("build") == key:
            return bool(known["crashes"])
    except (OSError, ValueError, KeyError):
        pass
    env = {k: v for k, v in os.environ.items() if k != ENV_FLAG}
    run = subprocess.run([sys.executable, "-c", _PROBE, str(gguf)], check=False, env=env, capture_output=True,
                         timeout=300)
    crashes = run.returncode in (-4, 132)  # killed by SIGILL
    if run.returncode != 0 and not crashes:  # another failure (no model...): the caller reports it
        return False
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"build": key, "crashes": crashes}))
    return crashes


def patch_this_process() -> None:
    """Load every later ``llama_cpp.Llama`` with ``use_extra_bufts = False``."""
    import llama_cpp.llama_cpp as lib

    if getattr(lib.llama_model_default_params, "_module_ai_no_extra_bufts", False):
        return
    original = lib.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    params._module_ai_no_extra_bufts = True
    lib.llama_model_default_params = params


def apply(gguf: Path) -> bool:
    """Probe (cached) and patch if needed; returns True when the workaround is active."""
    if os.environ.get(ENV_FLAG) == "1":
        patch_this_process()
        return True
    if not _has_amx() or not _amx_crashes(gguf):
        return False
    os.environ[ENV_FLAG] = "1"  # inherited by child processes, read by _llama_site/sitecustomize.py
    patch_this_process()
    return True
