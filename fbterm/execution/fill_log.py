"""The fills kept in memory: the most recent ones, and a count of all of them.

The journal holds every fill. Memory holds a bounded window, so a long session does not grow
with every fill; whoever needs all fills folds them in as they come (:meth:`FillLog.since`)
or reads them from the journal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import overload

from fbterm.model import Fill

# How many fills stay in memory; the journal keeps every one.
KEEP_FILLS = 5_000


class FillLog(Sequence[Fill]):
    """The most recent fills, oldest first, and how many there have been in all.

    ``total`` counts every fill the journal holds (restored ones included); :meth:`since`
    hands a reader the fills after the ``total`` it saw last, so readers fold fills in
    incrementally instead of rereading a list that would have to hold every fill ever.
    """

    def __init__(self, keep: int = KEEP_FILLS) -> None:
        self._recent: deque[Fill] = deque(maxlen=keep)
        self.total = 0

    @property
    def keep(self) -> int:
        return self._recent.maxlen or 0

    def append(self, fill: Fill) -> None:
        self._recent.append(fill)
        self.total += 1

    def replace(self, old: Fill, new: Fill) -> None:
        for i in range(len(self._recent) - 1, -1, -1):
            if self._recent[i].fill_id == old.fill_id:
                self._recent[i] = new
                return

    def since(self, seen: int) -> list[Fill]:
        """The fills after the first ``seen``; raises LookupError if some left memory."""
        new = self.total - seen
        if new <= 0:
            return []
        if new > len(self._recent):
            raise LookupError(
                f"{new - len(self._recent)} of {new} new fills are only in the journal"
            )
        return list(self._recent)[-new:]

    def __len__(self) -> int:
        return len(self._recent)

    @overload
    def __getitem__(self, i: int) -> Fill: ...
    @overload
    def __getitem__(self, i: slice) -> list[Fill]: ...
    def __getitem__(self, i: int | slice) -> Fill | list[Fill]:
        if isinstance(i, slice):
            return list(self._recent)[i]
        return self._recent[i]

    def __iter__(self) -> Iterator[Fill]:
        return iter(self._recent)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FillLog):
            return self.total == other.total and list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
