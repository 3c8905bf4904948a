"""The capability check: refuse, before any request, media a model's config says it cannot take.

A message's content parts (built by :mod:`module_ai.chains.multimodal` or by hand) need ``vision``,
``audio`` or ``video``; :func:`check_messages` compares them with the config's ``capabilities``.
Managed chat models run it on every call; :func:`with_capability_check` guards any runnable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from module_ai.config import ModelConfig
from module_ai.errors import CapabilityError, MediaError

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

__all__ = ["check_messages", "configs_of", "ensure_capabilities", "required_capabilities", "with_capability_check"]

PART_CAPABILITY: dict[str, str] = {
    "image_url": "vision", "image": "vision", "input_audio": "audio", "audio": "audio",
    "video_url": "video", "video": "video",
}
"""Content-part ``type`` -> the capability a model needs to accept it."""


def required_capabilities(messages: Any) -> set[str]:
    """The capabilities (``vision``, ``audio``, ``video``) the content parts of ``messages`` need."""
    needed = set()
    for part in _parts(messages):
        capability = PART_CAPABILITY.get(part.get("type"))
        if capability:
            needed.add(capability)
    return needed


def check_messages(cfg: ModelConfig, messages: Any, *, path: str | None = None) -> None:
    """Raise before any request if ``cfg``'s model cannot take the media in ``messages``.

    ``messages`` may be a list of messages, a ``PromptValue``, a string or a single message.

    Raises:
        CapabilityError: a needed capability is missing from ``cfg.capabilities``, or the server type
            cannot take that kind of media at all (Ollama: no audio or video).
        MediaError: an image is a URL but the server needs inline data (Ollama).
    """
    needed = required_capabilities(messages)
    _check(needed, set(cfg.capabilities), cfg.display_name, path)
    if cfg.server_type == "ollama" and needed:
        _check_ollama(messages, needed, cfg.display_name, path)


def ensure_capabilities(llm: Any, messages: Any, *, capabilities: Iterable[str] | None = None) -> None:
    """Check ``messages`` against every model config behind ``llm`` (fallbacks included).

    ``capabilities`` overrides the configs (use it for models built outside module_ai); a model with
    neither a module_ai config nor ``capabilities`` passes unchecked.

    Example:
        >>> from module_ai import multimodal_message
        >>> ensure_capabilities(object(), [multimodal_message("hi", images="https://e.com/a.png")],
        ...                     capabilities=["vision"])
    """
    if capabilities is not None:
        name = getattr(llm, "model_name", None) or getattr(llm, "model", None) or type(llm).__name__
        _check(required_capabilities(messages), set(capabilities), str(name), None)
        return
    for cfg in configs_of(llm):
        check_messages(cfg, messages, path=getattr(llm, "module_ai_path", None))


def with_capability_check(llm: Any, *, capabilities: Iterable[str] | None = None) -> Runnable:
    """``llm`` behind a guard that runs :func:`ensure_capabilities` on every input.

    The result is a LangChain runnable (invoke, stream, batch and async work); apply ``bind_tools`` or
    ``with_structured_output`` to ``llm`` before wrapping.

    Example:
        >>> guarded = with_capability_check(reg.chat("qwen3-4b"))   # doctest: +SKIP
        >>> guarded.invoke([multimodal_message("?", images="a.png")])  # doctest: +SKIP
        Traceback (most recent call last):
        module_ai.errors.CapabilityError: ...
    """
    from langchain_core.runnables import RunnableLambda

    caps = list(capabilities) if capabilities is not None else None

    def guard(value: Any) -> Any:
        ensure_capabilities(llm, value, capabilities=caps)
        return value

    return RunnableLambda(guard, name="capability_check") | llm


def configs_of(llm: Any) -> list[ModelConfig]:
    """The module_ai configs behind ``llm``: unwraps bindings, fallbacks and sequences (last step)."""
    fields = getattr(type(llm), "model_fields", {})
    if "runnable" in fields and "fallbacks" in fields:  # RunnableWithFallbacks proxies attributes
        return [c for r in (llm.runnable, *llm.fallbacks) for c in configs_of(r)]
    cfg = getattr(llm, "module_ai_config", None)
    if cfg is not None:
        return [cfg]
    for attr in ("bound", "last"):
        inner = getattr(llm, attr, None)
        if inner is not None and inner is not llm:
            return configs_of(inner)
    return []


# --- internals -------------------------------------------------------------------------------------
def _check(needed: set[str], have: set[str], model: str, path: str | None) -> None:
    missing = sorted(needed - have)
    if not missing:
        return
    kinds = "/".join({"vision": "image"}.get(c, c) for c in missing)
    listed = ", ".join(f'"{c}"' for c in missing)
    raise CapabilityError(
        f"the messages contain {kinds} input but the model's capabilities are "
        f"{sorted(have) or '[] (text only)'}; use a model that takes {kinds} (e.g. qwen-vl, qwen-omni) "
        f"and add {listed} to its capabilities in the config, or send text only",
        model=model, path=path, field="capabilities",
    )


def _check_ollama(messages: Any, needed: set[str], model: str, path: str | None) -> None:
    if needed - {"vision"}:
        raise CapabilityError(
            f"Ollama's chat API takes images only, not {'/'.join(sorted(needed - {'vision'}))}; "
            "use an OpenAI-compatible server (e.g. DashScope qwen-omni) for audio and video",
            model=model, path=path, field="server_type",
        )
    for part in _parts(messages):
        url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
        if url and not url.startswith("data:"):
            raise MediaError(
                f"Ollama needs inline images, got the URL {url[:80]!r}; pass a file path or bytes "
                "(image_part reads them into base64)",
                model=model, path=path,
            )


def _parts(messages: Any) -> Iterable[dict]:
    if hasattr(messages, "to_messages"):
        messages = messages.to_messages()
    if isinstance(messages, (str, dict)) or hasattr(messages, "content"):
        messages = [messages]
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(message, (tuple, list)) and len(message) == 2:
            content = message[1]
        if isinstance(content, list):
            yield from (p for p in content if isinstance(p, dict))
