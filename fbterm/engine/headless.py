"""``fbterm run --headless``: the engine without the console, then a summary."""

from __future__ import annotations

import signal
import sys
import threading
import time

from fbterm.config import Config
from fbterm.engine.core import Engine
from fbterm.engine.publisher import format_summary


def build_engine(cfg: Config) -> Engine:
    """The engine; it opens its own activity log and alert channels from ``cfg``."""
    return Engine(cfg)


class EngineFailed(RuntimeError):
    """The engine stopped because a journal write failed; the message is the one line to print."""


def run_headless(cfg: Config, *, duration: float | None = None, as_json: bool = False) -> int:
    """Run until ``duration`` seconds pass, SIGINT/SIGTERM, or the engine stops; then print
    the final summary (from a state no new tick can change). Returns the exit code.

    Raises :class:`EngineFailed` instead of printing a summary when a journal write failed:
    the summary would show what the journal does not hold.
    """
    engine = build_engine(cfg)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start(control=True)
        print(
            f"fbterm: engine running on {engine.broker.name}, {len(engine.executor.slots)} strategies, "
            f"symbols {', '.join(engine.symbols)}; journal {cfg.journal_path}",
            file=sys.stderr,
        )
        if engine.notes.note:
            print(f"fbterm: {engine.notes.note}", file=sys.stderr)
        t_end = time.monotonic() + duration if duration else None
        while not done.is_set() and engine.running:
            left = None if t_end is None else t_end - time.monotonic()
            if left is not None and left <= 0:
                break
            done.wait(min(left, 0.5) if left is not None else 0.5)
        if engine.fatal is None:
            engine.stop_feed()
            time.sleep(0.2)  # let the venue's last answers (IB) arrive before the summary
            summary = headless_summary(engine, as_json=as_json)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        engine.stop()
    if engine.fatal is not None:
        raise EngineFailed(engine.fatal)
    print(summary)
    return 0


def headless_summary(engine: Engine, *, as_json: bool = False) -> str:
    """The summary ``fbterm run --headless`` prints, from the running engine as it stands:
    ours and the venue's positions, connection history, reconciliation, warm-up, alerts."""
    snap = engine.build_snapshot_threadsafe()
    return format_summary(snap, as_json=as_json, broker_positions=engine.broker_positions)
