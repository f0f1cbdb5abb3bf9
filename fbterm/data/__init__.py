"""Data management: storage, cleaning and indicators, retrieval sources, the simulated market.

Bars everywhere are one shape: a DataFrame with a tz-aware UTC DatetimeIndex named ``ts`` and
float64 columns open, high, low, close, volume (see :func:`validate_bars`).

The names below are imported on first use, so importing the package (or one light module of
it) does not pay for pandas until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "fbterm.data.bars": ("BAR_COLUMNS", "DataError", "canonical_bar_size", "validate_bars"),
    "fbterm.data.csvparse": ("LoadReport",),
    "fbterm.data.storage": ("DataStorage", "StoredSeries"),
    "fbterm.data.processing": (
        "CleanReport", "DataProcessing", "clean_data", "find_gaps", "resample_bars", "transform_data",
    ),
    "fbterm.data.retrieval": (
        "CSVSource", "DataRetrieval", "HistoricalSource", "RealtimeSource", "SimulatedSource",
    ),
    "fbterm.data.simulated": ("SimulatedMarket", "synth_bars"),
}  # fmt: skip
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = [
    "BAR_COLUMNS",
    "CSVSource",
    "CleanReport",
    "DataError",
    "DataProcessing",
    "DataRetrieval",
    "DataStorage",
    "HistoricalSource",
    "LoadReport",
    "RealtimeSource",
    "SimulatedMarket",
    "SimulatedSource",
    "StoredSeries",
    "canonical_bar_size",
    "clean_data",
    "find_gaps",
    "resample_bars",
    "synth_bars",
    "transform_data",
    "validate_bars",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'fbterm.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from fbterm.data.bars import BAR_COLUMNS, DataError, canonical_bar_size, validate_bars
    from fbterm.data.csvparse import LoadReport
    from fbterm.data.processing import (
        CleanReport,
        DataProcessing,
        clean_data,
        find_gaps,
        resample_bars,
        transform_data,
    )
    from fbterm.data.retrieval import (
        CSVSource,
        DataRetrieval,
        HistoricalSource,
        RealtimeSource,
        SimulatedSource,
    )
    from fbterm.data.simulated import SimulatedMarket, synth_bars
    from fbterm.data.storage import DataStorage, StoredSeries
