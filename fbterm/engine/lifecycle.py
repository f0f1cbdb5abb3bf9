"""The engine's life: its own thread and asyncio loop, and the session that thread runs.

:class:`EngineThread` is the mechanics every caller relies on: start the thread and wait until
the engine trades (or raise what stopped it from starting), run a function on the loop from any
thread, ask the loop to stop, and know when it has. :func:`run_session` is what the loop runs,
in order: the venue comes up, the journal is reconciled with it, the operator's state is
restored, strategies warm up, then the feed, timers and publisher run until a stop, and the
shutdown stores the day's metrics and closes the session in the journal before the venue goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from fbterm.engine import startup

if TYPE_CHECKING:
    from fbterm.engine.core import Engine

T = TypeVar("T")


class EngineThread:
    """One thread with its own event loop; the stop event lives on that loop."""

    def __init__(self, name: str = "fbterm-engine") -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def has_loop(self) -> bool:
        return self._thread is not None and self.loop is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def start(
        self,
        main: Callable[[], Coroutine[Any, Any, None]],
        *,
        on_error: Callable[[BaseException], None],
        on_exit: Callable[[], None],
        timeout: float,
    ) -> None:
        """Run ``main`` on a new thread's loop; return once it calls :meth:`ready`.

        An error before then is raised here (a connection problem as ConnectionError); one
        after goes to ``on_error``. ``on_exit`` runs on the thread after its loop has closed.
        """
        self._thread = threading.Thread(
            target=self._thread_main, args=(main, on_error, on_exit), name=self.name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"engine did not start within {timeout:g} s")
        if self._startup_error is not None:
            self._thread.join(5)
            err = self._startup_error
            if isinstance(err, ConnectionError | OSError | TimeoutError):
                raise ConnectionError(str(err) or type(err).__name__) from err
            raise err

    def ready(self) -> None:
        """The engine trades: :meth:`start` returns (engine thread)."""
        self._ready.set()

    async def until_stopped(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()

    def stop(self, timeout: float) -> None:
        """Wake the stop event from any thread and wait up to ``timeout`` for the thread."""
        assert self._thread is not None and self.loop is not None
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.wake_stop)
        self._thread.join(timeout)

    def wake_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def request_stop(self) -> None:
        """The Stop command: end the main loop (engine thread)."""
        if self._stop_event is None:
            raise RuntimeError("the engine is not running")
        self._stop_event.set()

    def schedule(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` soon on the loop (any thread); nothing when the loop is gone."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the loop and return its result; directly when the loop is not running."""
        loop = self.loop
        if loop is None or loop.is_closed() or not self.running:
            return fn()

        async def _run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(_run(), loop).result(timeout)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _thread_main(
        self,
        main: Callable[[], Coroutine[Any, Any, None]],
        on_error: Callable[[BaseException], None],
        on_exit: Callable[[], None],
    ) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run(main))
        except BaseException as e:  # reported to start() or logged; the thread must end cleanly
            if not self._ready.is_set():
                self._startup_error = e
                self._ready.set()
            else:
                on_error(e)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            on_exit()
            self._stopped.set()

    async def _run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._stop_event = asyncio.Event()
        await main()


async def run_session(engine: Engine) -> None:
    """One trading session on the engine thread, from the venue's start to its stop."""
    e = engine
    if e.stop_requested:
        return
    previous = e.keeper.begin_session()
    await e.broker.start()
    e.link.state = e.broker.connection_state
    e.log("info", "engine", f"connected to {e.broker.name} ({e.link.state.value})")
    if e.reconciler is not None:
        await startup.prepare_remote(e.reconciler, e.symbols, e.activity)
    else:
        e.reconcile()
    e.restore_operator_state(previous)
    e.watch.arm()
    e.warm_up()
    warming = e.warmup.begin(e.retrieval)
    e.publisher.publish(force=True)
    e.thread.ready()
    e.commands.drain()
    e.feed_task = asyncio.create_task(e.feed.run(), name="feed")
    tasks = [
        e.feed_task,
        asyncio.create_task(e.housekeeping.run(), name="housekeeping"),
        asyncio.create_task(e.publisher.run(), name="publish"),
    ]
    if warming and e.retrieval is not None:
        tasks.append(asyncio.create_task(e.warmup.run(e.retrieval), name="warm-up"))
    if e.reconciler is not None:
        tasks.append(asyncio.create_task(e.reconciler.loop(), name="reconcile"))
    try:
        await e.thread.until_stopped()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if e.reconciler is not None:
            await e.reconciler.close()
        e.stop_requested = True  # from here on a disconnect is ours, not news
        if e.journal.failed is None:
            if e.oms.fills_total:
                e.update_metrics(store=True)
                e.write_daily_report()
            with contextlib.suppress(Exception):  # a failure here is the fault's to say
                e.keeper.end_session()
            e.log("info", "engine", "engine stopped")
        e.notes.fatal = e.fatal or ""
        e.publisher.publish(force=True, running=False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(e.broker.stop(), 5)
