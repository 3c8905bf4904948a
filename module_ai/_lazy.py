"""Lazy package exports: a name is imported from its module on first access (PEP 562), so importing a
package stays light. Standard library only.

Example:
    >>> __getattr__, __dir__ = lazy_exports("pkg", {"Thing": "pkg.things"}, {})
    >>> "Thing" in __dir__()
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str],
                 namespace: MutableMapping[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``(__getattr__, __dir__)`` for ``exports`` (``name -> module``).

    A value is cached in ``namespace`` (the package's ``globals()``) once imported; an unknown name
    raises ``AttributeError`` naming ``package``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
