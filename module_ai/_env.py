"""``${VAR}`` references in configs: the pattern, resolution from the environment (``.env`` loaded
first) and masking for display. Used by model configs and the Milvus settings.

Example:
    >>> resolve_env("${UNSET_EXAMPLE_VAR:-fallback}")
    'fallback'
    >>> masked_secret("${DASHSCOPE_API_KEY}"), masked_secret("sk-literal")
    ('${DASHSCOPE_API_KEY}', '**********')
"""

from __future__ import annotations

import os
import re

from module_ai.errors import MissingAPIKeyError

__all__ = ["ENV_REF", "load_dotenv_once", "masked_secret", "resolve_env"]

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""``${VAR}`` or ``${VAR:-default}``."""
MASK = "**********"

_DOTENV_LOADED = False


def resolve_env(value: str, *, path: str | None = None, model: str | None = None, field: str | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from the environment (``.env`` loaded first).

    Raises:
        MissingAPIKeyError: a referenced variable is unset and has no default.
    """
    load_dotenv_once()

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        found = os.environ.get(var)
        if found not in (None, ""):
            return found
        if default is not None:
            return default
        raise MissingAPIKeyError(
            f"environment variable {var} is not set; export {var}=... or add it to .env",
            path=path,
            model=model,
            field=field,
        )

    return ENV_REF.sub(substitute, value)


def load_dotenv_once() -> None:
    """Load ``.env`` (found from the working directory up) into ``os.environ`` once; set values win."""
    global _DOTENV_LOADED
    if _DOTENV_LOADED:
        return
    _DOTENV_LOADED = True
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True), override=False)


def masked_secret(raw: str) -> str:
    """A secret as it may be shown or saved: a whole ``${VAR}`` reference as it is, anything else masked."""
    return raw if ENV_REF.fullmatch(raw) else MASK
