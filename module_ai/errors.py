"""Errors raised by module_ai.

Every error subclasses :class:`ModuleAIError` and carries, where they apply, the config file
(``path``), the model name (``model``) and the config field (``field``). The message says what went
wrong, where, and how to fix it. The CLI prints it as one line and exits with code 1.

Tree::

    ModuleAIError
    ├── ConfigError                 a config file or field is wrong
    │   ├── MissingAPIKeyError      api_key refers to an environment variable that is not set
    │   └── CapabilityError         a message has images/audio/video the model's capabilities lack
    ├── UnknownModelError           no model of that name (or of that type) in the registry
    ├── MissingDependencyError      an optional package is not installed (names the extra)
    ├── BackendError                a server or local model failed (names model and URL, never the key)
    │   ├── AuthenticationError     HTTP 401: the API key is missing, wrong or expired
    │   ├── PermissionDeniedError   HTTP 403: the key may not use this model (not enabled, no quota)
    │   ├── ModelNotFoundError      HTTP 404: the server does not serve this model id at this URL
    │   └── BadRequestError         any other rejected request (400, 413, 422 ...): never retried
    ├── BudgetExceededError         a call would cross the tracker's max_cost
    ├── SharedStateError            the shared Redis (MODULE_AI_REDIS_URL) is unreachable (fail closed)
    ├── ContextWindowError          the input does not fit in input_tokens - out_tokens
    ├── MediaError                  an image/audio/video input cannot be read or sent in that form
    └── KnowledgeBaseError          a knowledge-base index is missing, corrupt or incompatible
"""

from __future__ import annotations

from types import ModuleType

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "BudgetExceededError",
    "CapabilityError",
    "ConfigError",
    "ContextWindowError",
    "KnowledgeBaseError",
    "MediaError",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModuleAIError",
    "PermissionDeniedError",
    "SharedStateError",
    "UnknownModelError",
]


class ModuleAIError(Exception):
    """Base class of every error module_ai raises on purpose.

    Args:
        message: what went wrong and how to fix it.
        path: the config file involved, if any.
        model: the model name involved, if any.
        field: the config field involved, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        model: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.model = model
        self.field = field
        self.message = message
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.model:
            where.append(f"model '{self.model}'")
        if self.field:
            where.append(f"field '{self.field}'")
        text = f"{': '.join(where)}: {self.message}" if where else self.message
        if "@" in text:  # never show the password of a scheme://user:password@host URL
            from module_ai._redact import redact_url

            text = redact_url(text) or text
        return text


class ConfigError(ModuleAIError):
    """A config file cannot be read, or a field has a wrong name, type or value."""


class MissingAPIKeyError(ConfigError):
    """``api_key`` refers to an environment variable that is neither set nor in ``.env``."""


class CapabilityError(ConfigError):
    """A message holds images, audio or video that the model's ``capabilities`` do not include."""


class MediaError(ModuleAIError):
    """A media input cannot be read, its type is unknown, or the server cannot take it in that form."""


class UnknownModelError(ModuleAIError):
    """No model of that name (or not of the requested ``model_type``) is in the registry."""


class MissingDependencyError(ModuleAIError):
    """An optional package is missing; the message gives the ``pip install`` line."""


class BackendError(ModuleAIError):
    """A server or an in-process model failed. Names the model and URL, never the API key.

    HTTP failures carry ``status_code``, ``url`` and ``attempts``; the provider's exception is the
    ``__cause__``.
    """

    status_code: int | None = None
    url: str | None = None
    attempts: int | None = None


class AuthenticationError(BackendError):
    """HTTP 401: the API key is missing, wrong or expired; the message names the variable to check."""


class PermissionDeniedError(BackendError):
    """HTTP 403: the key is valid but may not use this model (not enabled for the account, no quota)."""


class ModelNotFoundError(BackendError):
    """HTTP 404: the server serves no model of that id at that URL (check ``model`` and ``url``)."""


class BadRequestError(BackendError):
    """The server rejected the request (HTTP 400, 413, 422 ...); it is not retried."""


class BudgetExceededError(ModuleAIError):
    """A call's worst-case cost would cross the active usage tracker's ``max_cost``."""


class SharedStateError(ModuleAIError):
    """Redis holding the shared limits and budgets (``MODULE_AI_REDIS_URL``) cannot be reached and
    ``MODULE_AI_REDIS_FAIL`` is ``closed``. Names the URL with the password masked."""


class ContextWindowError(ModuleAIError):
    """The prompt does not fit into ``input_tokens - out_tokens``; says by how many tokens."""


class KnowledgeBaseError(ModuleAIError):
    """A knowledge-base index is missing, corrupt or built with another embedding model."""


def require(module: str, extra: str, *, model: str | None = None, path: str | None = None) -> ModuleType:
    """Import an optional module or raise :class:`MissingDependencyError` naming the extra.

    Example:
        >>> np = require("numpy", "rag")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the optional package '{module}' is not installed; run: pip install 'module_ai[{extra}]'",
            model=model,
            path=path,
        ) from exc
