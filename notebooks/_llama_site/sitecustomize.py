"""Child processes of the notebooks (the llama.cpp server): apply the AMX workaround of
``notebooks/_llama_compat.py`` when the parent found it necessary."""

import os

if os.environ.get("MODULE_AI_LLAMA_NO_EXTRA_BUFTS") == "1":
    import llama_cpp.llama_cpp as _lib

    _original = _lib.llama_model_default_params

    def _params():
        p = _original()
        p.use_extra_bufts = False
        return p

    _lib.llama_model_default_params = _params
