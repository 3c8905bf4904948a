"""Reading config files safely: regular files only, a size cap, UTF-8 (BOM allowed), strict JSON/YAML.

Hostile or broken files end in one :class:`ConfigError` naming the file, never a hang or a raw
exception: FIFOs and devices are refused before reading, at most :data:`MAX_CONFIG_BYTES` are read,
duplicate keys are refused, integers longer than :data:`MAX_INT_DIGITS` digits and non-finite
numbers are refused, YAML aliases may not expand a document beyond :data:`MAX_NODES` values (the
"billion laughs") nor refer to themselves, and nesting is capped at :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from module_ai.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_INT_DIGITS", "MAX_NODES", "entries_of", "read_structured"]

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB); a model config is a few hundred bytes."""
MAX_NODES = 100_000
"""Most values (scalars + containers, aliases counted each time they are used) in one file."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_INT_DIGITS = 40
"""Longest integer literal accepted."""


def _read_bytes(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=str(path)) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("not a regular file (a FIFO, device or socket); config files must be plain files",
                              path=str(path))
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=str(path)) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file is larger than {MAX_CONFIG_BYTES} bytes; a model config is a few hundred",
                          path=str(path))
    return data


def _decode(data: bytes, path: Path) -> str:
    if data.startswith(b"\x1f\x8b"):
        raise ConfigError("is gzip-compressed; decompress it (config files are UTF-8 text)", path=str(path))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise ConfigError("is UTF-16 or binary (NUL bytes); save it as UTF-8 text", path=str(path))
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
                          path=str(path)) from None


def _no_duplicates(pairs: list[tuple[Any, Any]], path: Path) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r} in one mapping (the later value would win); remove one",
                              path=str(path), field=str(key))
        out[key] = value
    return out


def _number(text: str, path: Path) -> int:
    if len(text.lstrip("+-")) > MAX_INT_DIGITS:
        raise ConfigError(f"integer with {len(text)} digits; numbers in configs have at most {MAX_INT_DIGITS}",
                          path=str(path))
    return int(text)


def _parse_json(text: str, path: Path) -> Any:
    def constant(name: str) -> float:
        raise ConfigError(f"{name} is not a valid number in a config; write a finite number", path=str(path))

    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, path),
                          parse_int=lambda s: _number(s, path), parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix the syntax",
                          path=str(path)) from None
    except RecursionError:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", path=str(path)) from None


def _yaml_loader(path: Path) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):  # own keys only: a merge (<<) may be overridden
                own = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge" and isinstance(k, yaml.ScalarNode)]
                _no_duplicates([(self.construct_object(k), None) for k in own], path)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> int:
            digits = str(node.value).replace("_", "")
            if len(digits.lstrip("+-")) > MAX_INT_DIGITS:
                _number(digits, path)
            return super().construct_yaml_int(node)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    return Loader


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise ConfigError(f"invalid YAML{where}: {problem}; fix the syntax", path=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}; fix the syntax", path=str(path)) from None
    except RecursionError:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", path=str(path)) from None


def _check_tree(value: Any, path: Path) -> None:
    """Bound size and depth (aliases counted at each use), refuse cycles and non-finite floats."""
    budget = MAX_NODES
    stack: list[tuple[Any, int, tuple[int, ...]]] = [(value, 0, ())]
    while stack:
        node, depth, ancestors = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(f"expands to more than {MAX_NODES} values (YAML aliases?); a model config is small",
                              path=str(path))
        if depth > MAX_DEPTH:
            raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", path=str(path))
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{node} is not a valid number in a config; write a finite number", path=str(path))
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError("a YAML alias refers to itself (a cycle); remove the alias", path=str(path))
            children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
            stack.extend((child, depth + 1, (*ancestors, id(node))) for child in children)


def read_structured(path: Path) -> Any:
    """Parse a ``.json`` / ``.yaml`` / ``.yml`` config file into plain data (see the module docstring).

    Raises:
        ConfigError: the file is not a readable regular file, too large, not UTF-8, not valid JSON/YAML,
            has duplicate keys, huge numbers, non-finite numbers, excessive nesting or alias expansion.
    """
    text = _decode(_read_bytes(path), path)
    data = _parse_json(text, path) if path.suffix.lower() == ".json" else _parse_yaml(text, path)
    _check_tree(data, path)
    return data


def entries_of(raw: Any, path: Path) -> list[tuple[str, Any]]:
    """``[(model name, config mapping)]`` of a parsed file: one model, ``{"models": {...}}`` or a list.

    Raises:
        ConfigError: unknown keys beside ``models``, duplicate or non-string names, a wrong shape.
    """
    if isinstance(raw, dict) and "models" in raw:
        extra = sorted(str(k) for k in raw if k != "models")
        if extra:
            raise ConfigError(f"unknown top-level key(s) {', '.join(extra)} beside 'models'; move them into a "
                              "model's config or remove them", path=str(path), field=extra[0])
        models = raw["models"]
        if isinstance(models, dict):
            return [(name_of(n, path), v) for n, v in models.items()]
        raw = models
    if isinstance(raw, list):
        entries, seen = [], set()
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not item.get("name"):
                raise ConfigError(f"list entry {i} needs a 'name' field", path=str(path), field="name")
            name = name_of(item["name"], path)
            if name in seen:
                raise ConfigError(f"duplicate model name '{name}' in this file; rename one of them", path=str(path),
                                  model=name, field="name")
            seen.add(name)
            entries.append((name, {k: v for k, v in item.items() if k != "name"}))
        return entries
    if isinstance(raw, dict):
        name = name_of(raw.get("name") or path.stem, path)
        return [(name, {k: v for k, v in raw.items() if k != "name"})]
    raise ConfigError("a config file must hold a mapping or a list of mappings", path=str(path))


def name_of(name: Any, path: Path) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a model name must be a non-empty string, got {type(name).__name__}", path=str(path),
                          field="name")
    return name
