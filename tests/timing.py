"""Waiting in tests: one timeout factor, and conditions instead of sleeps.

Tests never assert that something happened within N milliseconds, and never
sleep to let something happen: they wait for the condition itself, with a
deadline generous enough that only a real hang reaches it. Every deadline is
multiplied by ``TIMEOUT_FACTOR`` (``BRIDGE_TEST_TIMEOUT_FACTOR`` in the
environment, default 1), so a slow machine raises one number instead of
making the suite flaky.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_FACTOR", "scaled", "wait_for"]

T = TypeVar("T")


def _read_factor() -> float:
    raw = os.environ.get("BRIDGE_TEST_TIMEOUT_FACTOR", "1")
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise ValueError(f"BRIDGE_TEST_TIMEOUT_FACTOR must be a positive number, not {raw!r}")
    return factor


TIMEOUT_FACTOR: float = _read_factor()
"""Multiplies every deadline in the suite; raise it on slow machines."""

DEFAULT_TIMEOUT: float = 10.0
"""Seconds (before scaling) that ``wait_for`` waits when not told otherwise."""

_FIRST_POLL = 0.001
_MAX_POLL = 0.05


def scaled(seconds: float) -> float:
    """``seconds`` times ``TIMEOUT_FACTOR``: use for any deadline a test sets."""
    return seconds * TIMEOUT_FACTOR


async def wait_for(
    condition: Awaitable[T] | Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    what: str | None = None,
) -> Any:
    """Wait until ``condition`` holds and return its value.

    ``condition`` is either an awaitable (a coroutine, task or future: awaited,
    and its result returned) or a callable taking no argument (called until it
    returns something truthy, which is returned; it may be a coroutine
    function). ``timeout`` is in seconds before scaling by ``TIMEOUT_FACTOR``.
    Raises ``TimeoutError`` naming ``what`` (or the condition) at the deadline.
    """
    deadline = scaled(timeout)
    label = what or getattr(condition, "__qualname__", None) or repr(condition)
    if inspect.isawaitable(condition):
        try:
            return await asyncio.wait_for(condition, deadline)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            raise TimeoutError(f"{label} did not finish within {deadline:g}s") from None
    if not callable(condition):
        raise TypeError(f"wait_for takes an awaitable or a callable, not {condition!r}")
    end = time.monotonic() + deadline
    pause = _FIRST_POLL
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{label} was still false after {deadline:g}s")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_POLL)
