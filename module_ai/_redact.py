"""Safe display: hide URL passwords (``scheme://user:password@host``) and terminal control characters.

Standard library only: imported by :mod:`module_ai.errors` and the CLI.
"""

from __future__ import annotations

import re

__all__ = ["printable", "redact_url", "split_url_credentials"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, multiline: bool = False) -> str:
    r"""``text`` safe for a terminal: control, escape and bidi-override characters shown as ``\uXXXX``
    (also a valid JSON escape, so JSON text stays JSON); ``multiline`` keeps newlines and tabs.

    Example:
        >>> printable("evil\x1b[2Jname")
        'evil\\u001b[2Jname'
    """

    def escape(m: re.Match[str]) -> str:
        return m.group() if multiline and m.group() in "\n\t" else f"\\u{ord(m.group()):04x}"

    return _CONTROL.sub(escape, text)


_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/\s]*)?@")


def redact_url(text: str | None) -> str | None:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``****``
    (a lone ``scheme://token@`` is hidden whole).

    Example:
        >>> redact_url("https://bob:hunter2@gw.example/v1")
        'https://bob:****@gw.example/v1'
    """
    if not text or "@" not in text:
        return text
    return _USERINFO.sub(lambda m: m.group("scheme") + (f"{m.group('user')}:****@" if m.group("password") else "****@"),
                         text)


def split_url_credentials(url: str) -> tuple[str, str | None]:
    """``(url without user:password@, "user:password" or None)``."""
    match = _USERINFO.match(url)
    if not match:
        return url, None
    return match.group("scheme") + url[match.end():], url[len(match.group("scheme")):match.end() - 1]
