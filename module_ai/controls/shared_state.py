"""Shared state on Redis: the switch, the client, failure handling and slot leases.

Set ``MODULE_AI_REDIS_URL`` (environment or ``.env``), e.g. ``redis://:password@host:6379/0``, and
every process using that URL shares each model's concurrency cap, rpm/tpm buckets and adaptive
concurrency (:mod:`module_ai.controls.redis_limits`), named budgets and a usage ledger
(:mod:`module_ai.controls.redis_budget`). Without it nothing here runs and ``redis`` is never imported.

- ``MODULE_AI_REDIS_FAIL``: ``closed`` (default: an unreachable Redis raises
  :class:`~module_ai.errors.SharedStateError`) or ``open`` (fall back to in-process limits and
  budgets with one warning; Redis is tried again every :data:`RETRY_DOWN_S` seconds).
- ``MODULE_AI_REDIS_LEASE``: seconds a concurrency slot or budget reservation lives without renewal
  (default 30). A background thread renews held leases every third of that, so a crashed or
  SIGKILLed process frees its slots within one lease.

Cost: an admission and a release are one Lua round trip each, the ledger one more, a budget two
(reserve, settle). Async callers wait for slots with ``asyncio.sleep`` and run the admission in a
worker thread; the other round trips are short blocking calls (about 0.1 ms on loopback).
Steps after a call (returning a slot, settling, the ledger) never raise: in an outage what they
leave behind expires with its lease (a settlement lost then is not counted in the shared budget).

Or in code: ``configure_shared("redis://...", fail="open", lease_s=10)``. Keys are
``module_ai:...``; a model's key is ``sha256(name, URL, sha256(api key))`` (never the key itself).
The password in the URL is masked in every message (:func:`mask_url`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from module_ai.errors import ConfigError, SharedStateError

__all__ = [
    "REDIS_FAIL_ENV", "REDIS_LEASE_ENV", "REDIS_URL_ENV", "RETRY_DOWN_S", "SharedSettings", "SharedState",
    "configure_shared", "mask_url", "model_key", "on_shared", "shared_state",
]

REDIS_URL_ENV = "MODULE_AI_REDIS_URL"
REDIS_FAIL_ENV = "MODULE_AI_REDIS_FAIL"
REDIS_LEASE_ENV = "MODULE_AI_REDIS_LEASE"
RETRY_DOWN_S = 5.0
"""Fail-open: after Redis failed, seconds of in-process limits before Redis is tried again."""
PREFIX = "module_ai:"
_log = logging.getLogger("module_ai")


def mask_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:****@host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class SharedSettings:
    """Where the shared state lives and what to do when it is unreachable."""

    url: str
    fail_open: bool = False
    lease_s: float = 30.0

    def __repr__(self) -> str:
        return f"SharedSettings(url={mask_url(self.url)!r}, fail_open={self.fail_open}, lease_s={self.lease_s})"


def _from_env() -> SharedSettings | None:
    from module_ai._env import load_dotenv_once

    load_dotenv_once()
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    if not url:
        return None
    fail = os.environ.get(REDIS_FAIL_ENV, "closed").strip().lower() or "closed"
    lease = os.environ.get(REDIS_LEASE_ENV, "30").strip() or "30"
    return _settings(url, fail, lease, source="environment")


def _settings(url: str, fail: str, lease: Any, *, source: str) -> SharedSettings:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{REDIS_URL_ENV} ({source}) must be a redis:// , rediss:// or unix:// URL, "
                          f"got {mask_url(url)!r}", field=REDIS_URL_ENV)
    if fail not in ("open", "closed"):
        raise ConfigError(f"{REDIS_FAIL_ENV} must be 'open' or 'closed', got {fail!r}", field=REDIS_FAIL_ENV)
    try:
        lease_s = float(lease)
    except ValueError:
        lease_s = -1.0
    if not 0.2 <= lease_s <= 3600:
        raise ConfigError(f"{REDIS_LEASE_ENV} must be seconds between 0.2 and 3600, got {lease!r}",
                          field=REDIS_LEASE_ENV)
    return SharedSettings(url, fail == "open", lease_s)


_state: SharedState | None = None
_checked = False
_state_lock = threading.Lock()


def shared_state() -> SharedState | None:
    """The process's shared state, or ``None`` when no Redis URL is configured (read once)."""
    global _state, _checked
    if _checked:
        return _state
    with _state_lock:
        if not _checked:
            settings = _from_env()
            _state = SharedState(settings) if settings else None
            _checked = True
    return _state


def configure_shared(url: str | None, *, fail: str = "closed", lease_s: float = 30.0) -> None:
    """Switch shared limits/budgets on (``url``) or off (``None``) for objects built from now on.

    Limiters already created keep their mode; call :func:`module_ai.controls.limits.reset_limiters` after.
    """
    global _state, _checked
    with _state_lock:
        old, _state = _state, (SharedState(_settings(url, fail, lease_s, source="configure_shared"))
                               if url else None)
        _checked = True
    if old is not None:
        old.close()
    if url:
        for callback in _on_enable:
            callback()


_on_enable: list[Callable[[], None]] = []


def on_shared(callback: Callable[[], None]) -> None:
    """Call ``callback()`` now if shared state is configured, and each time :func:`configure_shared`
    switches it on (the usage log uses it to start the shared ledger)."""
    _on_enable.append(callback)
    if shared_state() is not None:
        callback()


def model_key(cfg: Any) -> str:
    """Redis key stem of a model endpoint: hash of name, URL and a fingerprint of the API key."""
    try:
        key = cfg.resolved_api_key() or ""
    except Exception:  # noqa: BLE001 - an unset ${VAR} key: the call itself will report it
        key = ""
    finger = hashlib.sha256(key.encode()).hexdigest()
    raw = "\0".join((cfg.display_name, str(cfg.url or cfg.model), finger))
    return f"{PREFIX}model:{hashlib.sha256(raw.encode()).hexdigest()[:24]}"


class SharedState:
    """One Redis client per process plus failure handling (see the module docstring)."""

    def __init__(self, settings: SharedSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._warned = False
        self._scripts: dict[str, Any] = {}
        self.leases = _LeaseKeeper(self)

    def __repr__(self) -> str:
        return f"SharedState({self.settings!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    redis = _redis()
                    self._client = redis.Redis.from_url(self.settings.url, socket_connect_timeout=1.0,
                                                        socket_timeout=5.0, decode_responses=True)
        return self._client

    def script(self, name: str, source: str) -> Any:
        """A registered Lua script (EVALSHA with a reload on NOSCRIPT)."""
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.client.register_script(source)
        return found

    def available(self) -> bool:
        """False while fail-open is waiting out a Redis outage."""
        return time.monotonic() >= self._down_until

    def run(self, op: Callable[[], Any], fallback: Callable[[], Any], what: str) -> Any:
        """``op()``; when Redis is unreachable: raise (fail closed) or ``fallback()`` (fail open)."""
        if not self.available():
            return fallback()
        redis = _redis()
        try:
            return op()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
            return self._failed(exc, fallback, what)

    def quiet(self, op: Callable[[], Any], what: str) -> None:
        """``op()`` for a step after the call (return a slot, settle, ledger): an outage is logged,
        never raised; what it leaves behind (a slot, a reservation) expires with its lease."""
        if not self.available():
            return
        redis = _redis()
        try:
            op()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
            _log.warning("module_ai: Redis at %s unreachable for %s (%s); it expires with its lease",
                         mask_url(self.settings.url), what, type(exc).__name__)

    def _failed(self, exc: BaseException, fallback: Callable[[], Any], what: str) -> Any:
        where = mask_url(self.settings.url)
        if not self.settings.fail_open:
            raise SharedStateError(
                f"Redis at {where} is unreachable for {what} ({type(exc).__name__}); start Redis or fix "
                f"{REDIS_URL_ENV}, or set {REDIS_FAIL_ENV}=open to fall back to in-process limits",
                field=REDIS_URL_ENV) from exc
        self._down_until = time.monotonic() + RETRY_DOWN_S
        if not self._warned:
            self._warned = True
            message = (f"module_ai: Redis at {where} is unreachable ({type(exc).__name__}); limits and "
                       f"budgets fall back to this process only ({REDIS_FAIL_ENV}=open)")
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            _log.warning(message)
        return fallback()

    def close(self) -> None:
        self.leases.stop()
        if self._client is not None:
            self._client.close()


def _redis() -> Any:
    from module_ai.errors import require

    return require("redis", "shared")


_RENEW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local expiry = t[1] * 1000 + t[2] / 1000 + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', expiry, ARGV[i + 1])
  redis.call('PEXPIRE', key, math.floor(tonumber(ARGV[1]) * 4))
end
return 1
"""


class _LeaseKeeper:
    """Renews the leases this process holds (slots, reservations) every third of the lease time."""

    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._held: dict[str, str] = {}  # token -> zset key
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def hold(self, key: str, token: str) -> None:
        with self._lock:
            self._held[token] = key
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._wake.clear()
                self._thread = threading.Thread(target=self._loop, daemon=True, name="module_ai-leases")
                self._thread.start()

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def stop(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        lease_ms = self._state.settings.lease_s * 1000
        while not self._wake.wait(self._state.settings.lease_s / 3):
            with self._lock:
                held = list(self._held.items())
            if not held or not self._state.available():
                continue
            try:
                script = self._state.script("renew", _RENEW)
                script(keys=[k for _, k in held], args=[lease_ms] + [t for t, _ in held])
            except Exception as exc:  # noqa: BLE001 - an outage shows on the next acquire; keep renewing
                _log.debug("module_ai: lease renewal failed: %s", type(exc).__name__)
