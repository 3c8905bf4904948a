"""``batch``/``abatch`` of managed models: default concurrency from the config, results in input order,
no finished item lost when one fails.

:func:`ainvoke_all` runs ``abatch`` with ``max_concurrency`` workers that each take the next input as
soon as their call returns. LangChain's ``Runnable.abatch`` starts one coroutine per input behind a
semaphore, so every finished call waits a loop pass before the next starts; with replies arriving
together (a batch against one server) those passes keep the calls in lockstep. Same calls, configs,
kwargs and results (``return_exceptions`` semantics) as ``Runnable.abatch``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ainvoke_all", "batch_configs", "settle_batch"]


def batch_configs(model: Any, config: Any, n: int) -> list:
    """One RunnableConfig per input; those without ``max_concurrency`` get the model's default."""
    from langchain_core.runnables.config import get_config_list

    from module_ai.controls.limits import batch_concurrency

    configs = get_config_list(config, n)
    default = batch_concurrency(model.module_ai_config)
    return [c if c.get("max_concurrency") else {**c, "max_concurrency": default} for c in configs]


async def ainvoke_all(runnable: Any, inputs: list, configs: list, **kwargs: Any) -> list:
    """``runnable.ainvoke`` on every input, ``configs[0]["max_concurrency"]`` at a time; outputs and
    exceptions in input order (as ``abatch(..., return_exceptions=True)``)."""
    import asyncio

    results: list[Any] = [None] * len(inputs)
    pending = iter(range(len(inputs)))

    async def worker() -> None:
        for i in pending:  # shared: each worker takes the next index when its call is done
            try:
                results[i] = await runnable.ainvoke(inputs[i], configs[i], **kwargs)
            except Exception as exc:  # noqa: BLE001 - kept in order, as return_exceptions=True does
                results[i] = exc

    width = min(configs[0].get("max_concurrency") or len(inputs), len(inputs)) if inputs else 0
    await asyncio.gather(*(worker() for _ in range(width)))
    return results


def settle_batch(results: list, return_exceptions: bool) -> list:
    """Results in input order; without ``return_exceptions`` the first error is raised carrying all
    results (``error.batch_results``: outputs and exceptions in input order), so none are lost."""
    if return_exceptions:
        return results
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return results
    first = failed[0]
    first.batch_results = results
    if hasattr(first, "add_note"):
        first.add_note(f"module_ai: {len(failed)} of {len(results)} batch items failed; every item's result "
                       "or error is in this exception's .batch_results (or pass return_exceptions=True)")
    raise first
