"""Prompt templates stored as data files: ``<name>.<lang>.txt`` and ``<name>.yaml`` in this folder.

One loader for both kinds. Users override any template without touching the package: put a file of
the same name in a folder named by ``$MODULE_AI_PROMPTS`` (or pass ``override_dir``). Templates use
``{placeholders}`` in ``str.format`` style. A ``.yaml`` file holds a set of named templates per
language (``zh:`` / ``en:``), e.g. the RAG agent's ``graph_rag.yaml``. A *profile* (a model's
``prompt_profile`` config field, e.g. ``small`` for small local models) picks
``<name>.<profile>.<lang>.txt`` (``<name>.<profile>.yaml`` for a set) where one exists, else the plain
template.

Example:
    >>> "{question}" in load_prompt("rag_answer_user", "zh")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from module_ai.errors import ConfigError

__all__ = ["LANGS", "PROFILES", "PROMPT_DIR", "load_prompt", "load_prompt_set"]

PROMPT_DIR = Path(__file__).parent
LANGS = ("zh", "en")
PROFILES = ("default", "small")
"""Prompt profiles: ``default`` for capable models, ``small`` (short rules) for ~0.5B local models."""


def _locate(filename: str, override_dir: str | os.PathLike[str] | None, *, preferred: str | None = None) -> Path:
    """The first of ``preferred`` (a profile's variant) and ``filename`` found, user folders first."""
    names = [preferred, filename] if preferred else [filename]
    for folder in (override_dir, os.environ.get("MODULE_AI_PROMPTS"), PROMPT_DIR):
        for name in names:
            if folder and (Path(folder) / name).is_file():
                return Path(folder) / name
    raise ConfigError(f"no prompt template '{filename}' in {PROMPT_DIR}", field="prompt")


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}", field="lang")


def _variant(stem: str, suffix: str, profile: str | None) -> str | None:
    """``<stem>.<profile><suffix>`` for a non-default ``profile``; ``None`` for the default one."""
    if profile not in (None, *PROFILES):
        raise ConfigError(f"prompt profile must be one of {', '.join(PROFILES)}, got {profile!r}",
                          field="prompt_profile")
    return f"{stem}.{profile}{suffix}" if profile not in (None, "default") else None


def load_prompt(name: str, lang: str = "zh", *, override_dir: str | os.PathLike[str] | None = None,
                profile: str | None = None) -> str:
    """The text of template ``name`` in ``lang`` (``zh`` or ``en``) for ``profile``, user overrides first."""
    _check_lang(lang)
    preferred = _variant(name, f".{lang}.txt", profile)
    return _locate(f"{name}.{lang}.txt", override_dir, preferred=preferred).read_text(encoding="utf-8")


def load_prompt_set(name: str, lang: str = "zh", *, override_dir: str | os.PathLike[str] | None = None,
                    profile: str | None = None) -> dict[str, str]:
    """The templates of ``<name>.yaml`` (``<name>.<profile>.yaml`` if any) for ``lang`` as ``{key: text}``.

    User overrides come first, as for :func:`load_prompt`.

    Example:
        >>> "{question}" in load_prompt_set("graph_rag", "zh")["grade_user"]
        True
        >>> len(load_prompt_set("graph_rag", "zh", profile="small")["generate_system"]) < 100
        True
    """
    _check_lang(lang)
    import yaml

    path = _locate(f"{name}.yaml", override_dir, preferred=_variant(name, ".yaml", profile))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return {key: str(text).strip() for key, text in data[lang].items()}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"prompt set is not a mapping with a '{lang}' section of templates: {exc}",
                          path=str(path), field="prompt") from exc
