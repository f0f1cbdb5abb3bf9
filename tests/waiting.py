"""Waiting on a condition: the one way the suite synchronises with threads, sockets and
subprocesses.

A test never sleeps a fixed time and then looks. It polls the condition it needs until a
generous deadline and fails naming what it waited for; a negative assertion ("nothing
happened") comes only after a positive sign that the other side has processed past the point
in question. The deadline bounds a hang, it is never a measurement: no test asserts how long
something took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 20.0  # seconds: generous, for a loaded 2-core machine
POLL = 0.02  # seconds between looks


def wait_until(cond: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """``cond()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


async def async_wait_until(cond: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """:func:`wait_until` for a coroutine: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(POLL)


async def poll_pause() -> None:
    """One poll interval for an async loop that checks its own condition and deadline (the
    only place a test waits a fixed time: between looks, never instead of one)."""
    await asyncio.sleep(POLL)
