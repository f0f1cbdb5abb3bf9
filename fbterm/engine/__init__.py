"""The trading engine, one job per module; :class:`Engine` (in :mod:`.core`) runs them all.

What importers need is re-exported here: the engine, the headless runner and its summary.
"""

from fbterm.engine.core import Engine
from fbterm.engine.headless import EngineFailed, build_engine, run_headless
from fbterm.engine.market import BarBuilder, TickSource
from fbterm.engine.publisher import format_summary, summary_dict

__all__ = [
    "BarBuilder",
    "Engine",
    "EngineFailed",
    "TickSource",
    "build_engine",
    "format_summary",
    "run_headless",
    "summary_dict",
]
