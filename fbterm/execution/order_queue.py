"""OrderQueue: a bounded, thread-safe FIFO of order intents for batch submission."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fbterm.model import Order, Signal

if TYPE_CHECKING:
    from fbterm.execution.orders import OrderManagement


class QueueFull(RuntimeError):
    """The order queue is at capacity: the order was NOT queued."""


@dataclass(frozen=True, slots=True)
class QueuedOrder:
    signal: Signal
    enqueued_ts: float = field(default_factory=time.time)


class OrderQueue:
    """A bounded, thread-safe FIFO of order intents for batch submission.

    A full queue raises :class:`QueueFull` to the caller; nothing is ever dropped silently.
    """

    def __init__(self, maxsize: int = 10_000):
        if maxsize <= 0:
            raise ValueError(f"OrderQueue maxsize must be > 0, got {maxsize}")
        self.maxsize = maxsize
        self._q: queue.Queue[QueuedOrder] = queue.Queue(maxsize)
        self._lock = threading.Lock()

    def enqueue_order(
        self, signal: Signal, *, block: bool = False, timeout: float | None = None
    ) -> None:
        try:
            self._q.put(QueuedOrder(signal), block=block, timeout=timeout)
        except queue.Full:
            raise QueueFull(
                f"order queue full ({self.maxsize} waiting): {signal.side.value} {signal.quantity:g} "
                f"{signal.instrument.key} for {signal.strategy_id} was not queued"
            ) from None

    def dequeue_order(self, *, block: bool = False, timeout: float | None = None) -> Signal | None:
        """The oldest queued signal, or None when the queue is empty."""
        try:
            return self._q.get(block=block, timeout=timeout).signal
        except queue.Empty:
            return None

    def dequeue_batch(self, max_items: int = 1000) -> list[Signal]:
        out: list[Signal] = []
        with self._lock:
            while len(out) < max_items:
                try:
                    out.append(self._q.get_nowait().signal)
                except queue.Empty:
                    break
        return out

    def __len__(self) -> int:
        return self._q.qsize()

    def submit_all(self, oms: OrderManagement, max_items: int = 1000) -> list[Order]:
        """Dequeue up to ``max_items`` and create them, in FIFO order.

        With an in-process venue the whole batch is journaled in one transaction; a remote
        venue's orders each commit before they leave the process, batch or not.
        """
        batch = self.dequeue_batch(max_items)
        if not batch:
            return []
        if oms.journal is None or not oms.venue_in_process:
            return [oms.create_order(s) for s in batch]
        with oms.journal.batch():
            return [oms.create_order(s) for s in batch]
