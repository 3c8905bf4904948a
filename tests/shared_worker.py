"""Worker processes for the shared-limits tests: ``python -m tests.shared_worker '<json spec>'``.

Imports once, then forks ``processes`` workers (default 1; each builds its own model, Redis client and
threads after the fork, so they share nothing but Redis and the server) and prints one JSON line: the
list of their results. Forking after the imports keeps 4 workers from paying 4 LangChain imports.
The environment carries ``MODULE_AI_REDIS_URL`` (and ``MODULE_AI_REDIS_LEASE``). Spec keys:
``mode`` ("chat" | "budget" | "hold"), ``url`` (fault server base URL), ``name`` (model name, the same
in every worker so they share one limiter), ``fields`` (config fields), ``n`` (requests, chat),
``threads``, ``prompt``, ``max_cost`` and ``budget`` (budget mode). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import langchain_openai  # noqa: F401 - imported before the fork, once for all workers

import module_ai.backends.openai  # noqa: F401
from module_ai import BudgetExceededError, track_usage
from tests.controls_helpers import chat_model


def _run_threads(threads: int, target) -> None:
    workers = [threading.Thread(target=target) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def chat(spec: dict, llm) -> dict:
    left = iter(range(spec["n"]))
    lock = threading.Lock()
    done = errors = 0

    def work() -> None:
        nonlocal done, errors
        while True:
            with lock:
                if next(left, None) is None:
                    return
            try:
                llm.invoke(spec.get("prompt", "hi"))
                with lock:
                    done += 1
            except Exception:  # noqa: BLE001 - counted; the test asserts there are none
                with lock:
                    errors += 1

    _run_threads(spec.get("threads", 8), work)
    return {"done": done, "errors": errors}


def budget(spec: dict, llm) -> dict:
    refused = 0
    with track_usage(max_cost=spec["max_cost"], budget=spec["budget"]) as usage:
        def work() -> None:
            nonlocal refused
            while True:
                try:
                    llm.invoke(spec.get("prompt", "hi"))
                except BudgetExceededError:
                    refused += 1
                    return

        _run_threads(spec.get("threads", 4), work)
    return {"calls": usage.calls, "cost": usage.total_cost, "input": usage.input_tokens,
            "output": usage.output_tokens, "refused": refused}


def hold(spec: dict, llm) -> dict:
    for _ in range(spec.get("threads", 3)):
        threading.Thread(target=llm.invoke, args=("hang",), daemon=True).start()
    print(json.dumps({"holding": True}), flush=True)
    time.sleep(600)
    return {}


def work(spec: dict) -> dict:
    llm = chat_model(spec["url"], name=spec["name"], **spec.get("fields", {}))
    return {"chat": chat, "budget": budget, "hold": hold}[spec["mode"]](spec, llm)


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("processes", 1) == 1:
        print(json.dumps([work(spec)]), flush=True)
        return
    children = []
    for _ in range(spec["processes"]):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 0
            try:
                os.write(write, json.dumps(work(spec)).encode())
            except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    results = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"worker {pid} failed with status {status}")
        results.append(json.loads(data))
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
