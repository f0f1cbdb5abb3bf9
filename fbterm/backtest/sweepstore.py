"""Where a sweep keeps its results: one part file per finished task, a manifest that says
which sweep they belong to, and the ranked table at the end.

Parts are written to a temporary name and renamed into place, so a sweep killed at any
moment leaves only whole parts; a rerun with the same manifest picks them up. Parquet when
pyarrow is installed (``sweep.parquet``), CSV otherwise (``sweep.csv``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from fbterm.backtest.inputs import BacktestError

MANIFEST = "sweep-manifest.json"
PARTS = "sweep-parts"


def parquet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


class SweepStore:
    """The results directory of one sweep."""

    def __init__(self, out_dir: str | os.PathLike[str], identity: dict[str, Any], *, fresh: bool):
        self.dir = Path(out_dir)
        self.parts = self.dir / PARTS
        self.identity = json.loads(json.dumps(identity, default=str))
        self.parquet = parquet_available()
        manifest = self.dir / MANIFEST
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if fresh and self.parts.exists():
                shutil.rmtree(self.parts)
            old = json.loads(manifest.read_text()) if manifest.exists() and not fresh else None
        except (OSError, ValueError) as e:
            raise BacktestError(f"{self.dir}: cannot use as the sweep's directory: {e}") from None
        self._size: int | None = None
        if old is not None:
            if old.get("identity") != self.identity:
                raise BacktestError(
                    f"{self.dir} holds the results of a different sweep; "
                    "use another --out directory, or --fresh to replace them"
                )
            self._size = int(old["task_size"])

    def task_size(self, proposed: int) -> int:
        """The task size of the stored sweep (a resumed sweep cuts the grid the same way),
        else ``proposed``, recorded now."""
        if self._size is None:
            self._size = proposed
            self._write_json(
                self.dir / MANIFEST, {"identity": self.identity, "task_size": proposed}
            )
        self.parts.mkdir(exist_ok=True)
        return self._size

    def done(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """The stored tasks: (first grid index, rows)."""
        if not self.parts.is_dir():
            return
        for p in sorted(self.parts.glob("part-*")):
            if p.name.endswith(".tmp"):
                continue
            try:
                lo = int(p.stem.split("-")[1])
                df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
            except (ValueError, OSError, IndexError):
                continue  # not ours or unreadable: the task runs again
            yield lo, _records(df)

    def save(self, lo: int, rows: list[dict[str, Any]]) -> None:
        """Store one finished task (atomically)."""
        df = pd.DataFrame(rows)
        path = self.parts / f"part-{lo:09d}.{'parquet' if self.parquet else 'csv'}"
        tmp = path.with_name(path.name + ".tmp")
        try:
            if self.parquet:
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
            os.replace(tmp, path)
        except OSError as e:
            raise BacktestError(f"{path}: cannot write: {e}") from None

    def finish(self, table: pd.DataFrame) -> Path:
        """Write the ranked table; the parts stay, so a rerun returns at once."""
        path = self.dir / ("sweep.parquet" if self.parquet else "sweep.csv")
        try:
            if self.parquet:
                table.to_parquet(path, index=False)
            else:
                table.to_csv(path, index=False)
        except OSError as e:
            raise BacktestError(f"{path}: cannot write: {e}") from None
        return path

    @staticmethod
    def _write_json(path: Path, doc: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        os.replace(tmp, path)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with missing values as NaN (an error column is None where absent)."""
    out = df.to_dict(orient="records")
    for r in out:
        if "error" in r and isinstance(r["error"], float):
            r.pop("error")
    return [{str(k): v for k, v in r.items()} for r in out]
