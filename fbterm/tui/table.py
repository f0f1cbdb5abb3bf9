"""A DataTable that takes whole row sets and writes only what changed.

Why: a DataTable repaint costs about the same for one changed cell as for fifty, and a width
change re-measures every row. So rows are keyed (the position's symbol, the order's id),
columns have fixed widths, every update is diffed against what is on screen, rows that did
not change are not touched, the cursor stays on the same *row key* (not the same index) and
ordering is a stable sort on the chosen column with the row key as tie-breaker.

Which columns show, and how wide, follows the table's width (see :func:`fit_columns`): the
most important columns first, then the spare cells to the columns that can use them. Widths
change only when the terminal is resized or a longer name appears (an option contract), never
per tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

# Semantic tones a cell may carry; each theme colours them via component classes.
TONES = ("up", "down", "flat", "ok", "warn", "breach", "buy", "sell", "muted", "live", "bad")


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # the fewest cells it shows in
    right: bool = False  # numbers align right
    prio: int = 0  # importance: 0 first; the highest numbers are dropped first when narrow
    grow: int = 0  # up to this many more cells when the table has room
    fit: bool = False  # takes the width of its longest text (up to width + grow) before others


def fit_columns(
    columns: Sequence[Column], avail: int, longest: dict[str, int], pad: int
) -> tuple[tuple[str, int], ...]:
    """Which columns fit ``avail`` cells and how wide each is, in display order.

    Columns are taken in order of importance while they fit (a narrower, less important one
    may still fit after a wider one did not); ``fit`` columns first take the cells their
    longest text needs; what is left goes to the growing columns, most important first.
    """
    want: dict[str, int] = {}
    for c in columns:
        w = c.width
        if c.fit:
            w = max(w, min(longest.get(c.key, 0), c.width + c.grow))
        want[c.key] = w
    chosen: dict[str, int] = {}
    used = 0
    for c in sorted(columns, key=lambda c: c.prio):
        need = want[c.key] + pad
        if used + need <= avail or not chosen:
            chosen[c.key] = want[c.key]
            used += need
    spare = avail - used
    for c in sorted(columns, key=lambda c: c.prio):
        if spare <= 0:
            break
        if c.key in chosen and c.grow and not c.fit:
            extra = min(spare, c.width + c.grow - chosen[c.key])
            chosen[c.key] += extra
            spare -= extra
    return tuple((c.key, chosen[c.key]) for c in columns if c.key in chosen)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cells: dict[str, tuple[str, str]]  # column -> (text, tone)
    sort: dict[str, Any] = field(default_factory=dict)  # column -> sortable raw value

    def text(self) -> str:
        return " ".join(t for t, _ in self.cells.values())


class KeyText(Text):
    """The first cell of a row: a Text that remembers its row key, so sort() can order rows
    by our own ranking through DataTable's public API."""

    row_key: str = ""


class KeyedTable(DataTable[Text]):
    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    DEFAULT_SORT: ClassVar[str] = ""
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tone--{t}" for t in TONES}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            id=id, classes=classes, cursor_type="row", zebra_stripes=False, show_cursor=True
        )
        self.filter_text = ""
        self.sort_column = self.DEFAULT_SORT or self.COLUMNS[0].key
        self.sort_reverse = False
        self._rows: dict[str, Row] = {}  # every row we were given, before filtering
        self._shown: dict[str, dict[str, tuple[str, str]]] = {}  # what is on screen
        self._order: list[str] = []
        self._styles: dict[str, Style] = {}
        self._columns_built: tuple[str, ...] = ()
        self._layout: tuple[tuple[str, int], ...] = ()
        self.updates = 0  # cells written; tests read it to prove updates are diffed

    # -- columns -------------------------------------------------------------------------
    @property
    def active_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.COLUMNS if c.key in self._columns_built)

    @property
    def column_widths(self) -> dict[str, int]:
        return dict(self._layout)

    def _longest(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.COLUMNS:
            if c.fit:
                out[c.key] = max(
                    (len(r.cells.get(c.key, ("", ""))[0]) for r in self._rows.values()), default=0
                )
        return out

    def _fitting(self, width: int) -> tuple[tuple[str, int], ...]:
        return fit_columns(self.COLUMNS, width, self._longest(), 2 * self.cell_padding)

    def _relayout(self) -> None:
        # Only a change in which columns fit, or how wide, rebuilds the table.
        width = self.scrollable_content_region.width or self.size.width
        if width > 0:
            layout = self._fitting(width)
            if layout != self._layout:
                self._build_columns(layout)

    def on_resize(self) -> None:
        self._relayout()

    def _build_columns(self, layout: tuple[tuple[str, int], ...] | None = None) -> None:
        if layout is None:
            layout = self._layout or tuple((c.key, c.width) for c in self.COLUMNS)
        widths = dict(layout)
        cols = tuple(c for c in self.COLUMNS if c.key in widths)
        self.clear(columns=True)
        for c in cols:
            self.add_column(self._label(c, widths[c.key]), width=widths[c.key], key=c.key)
        self._layout = tuple(layout)
        self._columns_built = tuple(c.key for c in cols)
        self._shown.clear()
        self._order.clear()
        self._apply()

    def _label(self, c: Column, width: int | None = None) -> Text:
        mark = ""
        if c.key == self.sort_column:
            mark = "▼" if self.sort_reverse else "▲"
        cells = width or self.column_widths.get(c.key, c.width)
        label = f"{c.label} {mark}" if mark and len(c.label) + 2 <= cells else c.label + mark
        label = label[:cells]
        return Text(label, justify="right" if c.right else "left")

    # -- styles --------------------------------------------------------------------------
    def restyle(self) -> None:
        """Re-read tone colours (after a theme change) and rewrite every cell once."""
        self._styles.clear()
        if self.is_mounted:
            self._build_columns()

    def _style(self, tone: str) -> Style:
        st = self._styles.get(tone)
        if st is None:
            try:
                st = self.get_component_rich_style(f"tone--{tone}", partial=True)
            except KeyError:
                st = Style()
            self._styles[tone] = st
        return st

    def cell_text(self, column: str, text: str, width: int) -> str:
        """What a cell shows in ``width`` cells; a table may say it shorter than cutting it."""
        return text

    def _cell(self, col: Column, text: str, tone: str, *, first: bool, row_key: str) -> Text:
        text = self.cell_text(col.key, text, self.column_widths.get(col.key, col.width))
        t: Text = KeyText(text) if first else Text(text)
        if first:
            t.row_key = row_key  # type: ignore[attr-defined]
        t.justify = "right" if col.right else "left"
        t.no_wrap = True
        t.overflow = "ellipsis"
        if tone:
            t.stylize(self._style(tone))
        return t

    # -- sorting and filtering -------------------------------------------------------------
    def cycle_sort(self) -> None:
        keys = [c.key for c in self.active_columns]
        i = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.sort_column = keys[(i + 1) % len(keys)]
        self._relabel()
        self._apply()

    def reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._relabel()
        self._apply()

    def _relabel(self) -> None:
        for c in self.active_columns:
            col = self.columns.get(c.key)  # type: ignore[call-overload]
            if col is not None:
                col.label = self._label(c)
        self._update_count += 1
        self.refresh()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._apply()

    def _sort_key(self, row: Row) -> tuple[Any, ...]:
        v = row.sort.get(self.sort_column)
        if v is None:
            v = row.cells.get(self.sort_column, ("", ""))[0]
        # None-safe, type-stable: numbers before text, then the row key breaks ties so equal
        # values never swap places between updates.
        if isinstance(v, int | float):
            return (0, v, "", row.key)
        return (1, 0, str(v).lower(), row.key)

    def _visible(self) -> list[Row]:
        rows = list(self._rows.values())
        if self.filter_text:
            needle = self.filter_text.lower()
            rows = [r for r in rows if needle in r.text().lower() or needle in r.key.lower()]
        rows.sort(key=self._sort_key, reverse=self.sort_reverse)
        return rows

    # -- updates -------------------------------------------------------------------------
    def set_rows(self, rows: Iterable[Row]) -> None:
        self._rows = {r.key: r for r in rows}
        if self.is_mounted and self._columns_built:
            if any(c.fit for c in self.COLUMNS):
                self._relayout()  # a longer name (an option contract) may need a wider column
            self._apply()

    def _apply(self) -> None:
        if not self._columns_built:
            return
        cols = self.active_columns
        rows = self._visible()
        keep_key = self.selected_key
        wanted = {r.key for r in rows}
        for key in [k for k in self._shown if k not in wanted]:
            self.remove_row(key)
            del self._shown[key]
        added = False
        for r in rows:
            cells = {c.key: r.cells.get(c.key, ("", "")) for c in cols}
            old = self._shown.get(r.key)
            if old is None:
                self.add_row(
                    *(
                        self._cell(c, *cells[c.key], first=i == 0, row_key=r.key)
                        for i, c in enumerate(cols)
                    ),
                    key=r.key,
                )
                self.updates += len(cols)
                added = True
            else:
                for i, c in enumerate(cols):
                    if old[c.key] != cells[c.key]:
                        self.update_cell(
                            r.key, c.key, self._cell(c, *cells[c.key], first=i == 0, row_key=r.key)
                        )
                        self.updates += 1
            self._shown[r.key] = cells
        order = [r.key for r in rows]
        current = self._current_order() if not added else None
        if current != order:
            rank = {k: i for i, k in enumerate(order)}
            self.sort(cols[0].key, key=lambda cell: rank.get(getattr(cell, "row_key", ""), 0))
        self._order = order
        if keep_key is not None and keep_key in wanted:
            idx = order.index(keep_key)
            if idx != self.cursor_row:
                self.move_cursor(row=idx, scroll=False)

    def _current_order(self) -> list[str]:
        out: list[str] = []
        for i in range(self.row_count):
            try:
                out.append(str(self.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value))
            except CellDoesNotExist:
                break
        return out

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None
        return str(key) if key is not None else None

    def select_key(self, key: str) -> None:
        try:
            idx = self.get_row_index(key)
        except RowDoesNotExist:
            return
        self.move_cursor(row=idx)

    @property
    def keys(self) -> Sequence[str]:
        return list(self._order)


def tone_cells(pairs: Iterable[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """Build a cells dict from (column, text, tone) triples."""
    return {col: (text, tone) for col, text, tone in pairs}
