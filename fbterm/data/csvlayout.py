"""A bar file's layout, read from its first lines: the delimiter, the decimal mark and whether
there is a header at all.

Vendors differ: most write ``,`` with a header; European exports write ``;`` with decimal
commas (``101,25``); exchange dumps (Binance klines) and MetaTrader histories have no header,
just the time (or a date and a time) followed by open, high, low, close and volume, and maybe
more columns, which are ignored. A file without a header gets those positional names, and
the load says so.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from fbterm.data.bars import DataError

DELIMITERS = (",", ";", "\t", "|")
# The positional layout of a file without a header (what klines and MetaTrader write).
POSITIONAL = ("timestamp", "open", "high", "low", "close", "volume")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")
_COMMA_NUMBER = re.compile(r"^[+-]?\d{1,3}(\.\d{3})*,\d+$|^[+-]?\d+,\d+$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|^\d{8}")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    header: list[str]  # the column names: the file's, or positional ones when it has none
    delimiter: str = ","
    decimal: str = "."
    has_header: bool = True

    @property
    def first_data_line(self) -> int:
        """The file line (1-based) of the first data row."""
        return 2 if self.has_header else 1

    def note(self) -> str:
        """What was assumed, for the load report; '' for a plain comma file with a header."""
        parts = []
        if self.delimiter != ",":
            name = {"\t": "tab", ";": "semicolon", "|": "pipe"}[self.delimiter]
            parts.append(f"columns separated by {name}s")
        if self.decimal != ".":
            parts.append("decimal commas")
        if not self.has_header:
            parts.append(f"no header: columns read as {', '.join(self.header[:7])}")
        return "; ".join(parts)


def read_layout(path: Path, where: str) -> CsvLayout:
    """The layout of the bar file at ``path``; DataError names what cannot be read."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            second = f.readline()
    except FileNotFoundError:
        raise DataError(where, "file not found") from None
    except IsADirectoryError:
        raise DataError(where, "is a directory, not a CSV file") from None
    except UnicodeDecodeError as e:
        raise DataError(where, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(where, f"cannot read: {e.strerror}") from None
    if not first.strip():
        raise DataError(where, "file is empty (no header line)")
    delimiter = _delimiter(first, second)
    cells = _cells(first, delimiter)
    sample = _cells(second, delimiter) if second.strip() else cells
    decimal = "," if delimiter != "," and any(_COMMA_NUMBER.match(c) for c in sample) else "."
    if _is_data(cells, decimal):
        return CsvLayout(_positional(cells), delimiter, decimal, has_header=False)
    # pandas names a blank header cell "Unnamed: <position>"; use the same name to select it.
    header = [h or f"Unnamed: {i}" for i, h in enumerate(cells)]
    return CsvLayout(header, delimiter, decimal)


def _delimiter(first: str, second: str) -> str:
    """The candidate that splits the first line into the most cells, and the second line into
    as many (a comma inside ``1,5`` under ``;`` does not win: the counts differ). A file
    whose lines disagree under every candidate keeps the one that splits its header most, so
    the error names the right columns; ``,`` wins ties."""
    counts = {d: len(_cells(first, d)) for d in DELIMITERS}
    split = [d for d in DELIMITERS if counts[d] > 1]
    agree = [d for d in split if not second.strip() or len(_cells(second, d)) == counts[d]]
    return max(agree or split or [","], key=lambda d: counts[d])


def _cells(line: str, delimiter: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))]


def _number(cell: str, decimal: str) -> bool:
    if decimal == ",":
        return bool(_COMMA_NUMBER.match(cell) or _PLAIN_NUMBER.match(cell))
    return bool(_PLAIN_NUMBER.match(cell))


def _is_data(cells: list[str], decimal: str) -> bool:
    """A first line that is a bar, not names: a time, then at least five numbers."""
    if len(cells) < 6:
        return False
    first_is_time = _number(cells[0], ".") or bool(_DATE_LIKE.match(cells[0]))
    rest = cells[2:] if _CLOCK.match(cells[1]) else cells[1:]
    return first_is_time and len(rest) >= 5 and all(_number(c, decimal) for c in rest[:5])


def _positional(cells: list[str]) -> list[str]:
    names = ["date", "time", *POSITIONAL[1:]] if _CLOCK.match(cells[1]) else list(POSITIONAL)
    return names + [f"extra_{i}" for i in range(len(names), len(cells))]
