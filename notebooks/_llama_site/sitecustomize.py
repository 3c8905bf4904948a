"""Child processes of the notebooks (the llama.cpp server): apply the AMX workaround of
``notebooks/_llama_compat.py`` when the parent found it necessary.

The one implementation is ``_llama_compat.patch_this_process``; it is loaded from its file, so the
notebooks folder is not put on the child's ``sys.path``.
"""

import os

if os.environ.get("MODULE_AI_LLAMA_NO_EXTRA_BUFTS") == "1":
    import importlib.util as _util
    from pathlib import Path as _Path

    _spec = _util.spec_from_file_location("_llama_compat", _Path(__file__).resolve().parents[1] / "_llama_compat.py")
    _compat = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_compat)
    _compat.patch_this_process()
