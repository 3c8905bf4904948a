"""Run the real llama-cpp-python OpenAI-compatible server on the tiny GGUF, as a subprocess.

    srv = start_llama_server(gguf_path)    # -> LlamaServer; srv.base_url == "http://127.0.0.1:P/v1"
    ...
    srv.stop()

Measured with llama-cpp-python 0.3.36 and the tiny model (tests/test_servers_smoke.py pins these down):
- Ready in about 1 s. `GET /v1/models` lists one model whose id is --model_alias ("tiny" here).
- `/v1/chat/completions` non-streaming returns `usage`. `max_tokens` is honoured; `max_completion_tokens`
  is IGNORED (asked for 3, got a reply running to n_ctx) - the stock `ChatOpenAI(max_tokens=...)` sends
  that one. Caveat: llama-cpp-python lets a reply overshoot `max_tokens` while the last bytes look like an
  incomplete UTF-8 sequence (random byte output of the plain model hit 6 tokens for max_tokens=3; real
  models doing CJK through byte fallback can overshoot by a few). The default printable tiny GGUF avoids it.
- Unknown body fields are accepted and silently ignored (HTTP 200): top-level `enable_thinking`,
  `chat_template_kwargs` (NOT forwarded to the template; only the server-level `--chat_template_kwargs`
  flag is), `thinking_budget`, `foo`.
- Streaming works (SSE, ends with `data: [DONE]`); `stream_options: {"include_usage": true}` is accepted but
  NO usage chunk is sent: clients must estimate streaming usage for this server.
- `/v1/embeddings` returns one 64-dim vector per input (needs `--embedding true` and the GGUF's
  `llama.pooling_type` = mean, otherwise it returns per-token vectors); usage has prompt_tokens.
  Token-id input (`[[1, 2, 3]]`, what OpenAIEmbeddings sends by default) gets HTTP **500** (a pydantic
  validation error), not 400, so the openai SDK retries it.
- `--api_key K` makes every route require `Authorization: Bearer K` (401 otherwise); not used by the fixture.
- The printable tiny model never emits </s>: a chat call without max_tokens runs to n_ctx (~2000 tokens,
  a fraction of a second). Pass max_tokens in tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, proc: subprocess.Popen, port: int, model_id: str, log_path: Path, api_key: str | None):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = self.url + "/v1"
        self.model_id = model_id
        self.log_path = log_path
        self.api_key = api_key

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_llama_server(
    model_path: str | Path,
    *,
    api_key: str | None = None,
    model_alias: str = "tiny",
    n_ctx: int = 2048,
    seed: int = 42,
    n_threads: int = 1,
    timeout: float = 60.0,
    log_dir: str | Path | None = None,
) -> LlamaServer:
    """Start `python -m llama_cpp.server` on a free port; wait until `GET /v1/models` answers."""
    model_path = Path(model_path)
    port = free_port()
    log_path = Path(log_dir or model_path.parent) / f"llama_server_{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        model_alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--embedding",
        "true",
        "--n_ctx",
        str(n_ctx),
        "--seed",
        str(seed),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--verbose",
        "false",
    ]
    if api_key:
        cmd += ["--api_key", api_key]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    srv = LlamaServer(proc, port, model_alias, log_path, api_key)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{srv.log()[-3000:]}")
        try:
            r = httpx.get(srv.base_url + "/models", headers=headers, timeout=2.0)
            if r.status_code == 200:
                return srv
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    srv.stop()
    raise TimeoutError(f"llama_cpp.server not ready after {timeout}s:\n{srv.log()[-3000:]}")
