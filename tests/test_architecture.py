"""Architecture contracts: the engine never imports textual; only the IB adapter imports ib_async."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports() -> str | None:
    if LINT_IMPORTS.exists():
        return str(LINT_IMPORTS)
    return shutil.which("lint-imports")


@pytest.mark.skipif(lint_imports() is None, reason="import-linter is not installed")
def test_import_linter_contracts_in_pyproject_are_kept():
    r = subprocess.run(
        [lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "0 broken" in out and "2 kept" in out, out


@pytest.mark.parametrize(
    "module",
    [
        "fbterm.engine",
        "fbterm.headless",
        "fbterm.execution.orders",
        "fbterm.execution.brokers.paper",
        "fbterm.risk.portfolio",
        "fbterm.risk.strategy",
        "fbterm.backtest.backtester",
        "fbterm.strategies",
        "fbterm.config",
        "fbterm.cli",
    ],
)
def test_importing_the_core_loads_neither_textual_nor_ib_async(module: str):
    # A fresh interpreter: what this test process already imported must not hide a leak.
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'ib_async'))\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"{module} pulled in {r.stdout.strip()}"
