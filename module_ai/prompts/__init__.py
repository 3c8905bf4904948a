"""Prompt templates stored as data files: ``<name>.<lang>.txt`` in this folder.

Users override any template without touching the package: put a file of the same name in a folder
named by ``$MODULE_AI_PROMPTS`` (or pass ``override_dir``). Templates use ``{placeholders}`` in
``str.format`` style.

Example:
    >>> "{question}" in load_prompt("rag_answer_user", "zh")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from module_ai.errors import ConfigError

__all__ = ["LANGS", "PROMPT_DIR", "load_prompt"]

PROMPT_DIR = Path(__file__).parent
LANGS = ("zh", "en")


def load_prompt(name: str, lang: str = "zh", *, override_dir: str | os.PathLike[str] | None = None) -> str:
    """The text of template ``name`` in ``lang`` (``zh`` or ``en``), user overrides first."""
    if lang not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}", field="lang")
    filename = f"{name}.{lang}.txt"
    for folder in (override_dir, os.environ.get("MODULE_AI_PROMPTS")):
        if folder and (Path(folder) / filename).is_file():
            return (Path(folder) / filename).read_text(encoding="utf-8")
    path = PROMPT_DIR / filename
    if not path.is_file():
        raise ConfigError(f"no prompt template '{filename}' in {PROMPT_DIR}", field="prompt")
    return path.read_text(encoding="utf-8")
