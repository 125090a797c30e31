"""Run a coroutine to completion from a test, whatever else the worker holds.

The session-scoped sync Playwright browser (tests/smart/conftest.py) keeps an event loop running
on the worker's main thread until the session ends, so a later `asyncio.run` in the same worker
fails ("cannot be called from a running event loop"): it depended on which tests the worker had
run before (seen in CI with three workers). In that case the coroutine runs in a thread of its own.
"""
from __future__ import annotations

import asyncio
import threading


def run_async(coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="run_async")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
