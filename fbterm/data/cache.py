"""The binary load cache: a clean CSV load is kept next to the file, so the next load of a big
file costs a few milliseconds.

The cache is ``.<name>.fbcache.npz`` beside the CSV, keyed by the file's size, mtime and inode
(and the load options that change the result); a stale or unreadable cache is just a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fbterm.data.bars import BAR_COLUMNS, bar_index, bars_from_arrays
from fbterm.data.csvparse import LoadReport

CACHE_VERSION = 4


def cache_path(path: Path) -> Path:
    """Where the cache of ``path`` lives: hidden, beside it."""
    return path.with_name(f".{path.name}.fbcache.npz")


def cache_key(path: Path, timezone: str, adj_close: bool) -> str:
    """What a cache must match to stand for a load of ``path`` with these options: any edit
    of the file (size, mtime, inode) or a change of options is a miss."""
    st = path.stat()
    return f"v{CACHE_VERSION}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{timezone}|{int(adj_close)}"


def cache_read(path: Path, key: str) -> tuple[pd.DataFrame, LoadReport] | None:
    """The cached load of ``path`` under ``key``, or None (missing, stale or unreadable)."""
    cp = cache_path(path)
    try:
        with np.load(cp, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            ts, data, meta = z["ts"], z["data"], json.loads(str(z["report"]))
    except (OSError, KeyError, ValueError):
        return None
    rep = LoadReport(**meta)
    rep.from_cache = True
    return bars_from_arrays(ts, data), rep


def cache_write(path: Path, key: str, df: pd.DataFrame, report: LoadReport) -> None:
    """Keep ``df`` as the cached load of ``path``; written atomically, silently skipped when
    the folder is read-only."""
    cp = cache_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=cp.name, suffix=".tmp", dir=cp.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, key=np.array(key), ts=bar_index(df).asi8,
                data=df[list(BAR_COLUMNS)].to_numpy(dtype=np.float64),
                report=np.array(json.dumps(report.to_dict())),
            )  # fmt: skip
        os.replace(tmp, cp)
    except OSError:
        # A read-only data folder just means no cache.
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
