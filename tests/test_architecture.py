"""Architecture contracts, checked on every test run.

The layers (CLI and console on top, model and config at the bottom), no textual outside the
console, ib_async only in the IB adapter, fbterm's own code clean under ``mypy --strict``, and
every module within the line budget.
import-linter and mypy are declared test dependencies: a missing one is a broken install, so
these tests fail rather than skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]') but is not installed"
    return found


def test_import_linter_contracts_in_pyproject_are_kept():
    r = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "0 broken" in out and "3 kept" in out, out
    assert "Layers: the CLI and console on top" in out, out


@pytest.mark.slow
def test_mypy_strict_is_clean_on_fbterm():
    # The configuration (strict, the overrides for untyped third-party packages) lives in
    # pyproject.toml; this runs exactly what a developer runs.
    r = subprocess.run(
        [_tool("mypy"), "--no-incremental"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert "Success: no issues found" in out, out[-2000:]


@pytest.mark.parametrize(
    "module",
    [
        "fbterm.engine",
        "fbterm.engine.headless",
        "fbterm.execution.orders",
        "fbterm.execution.brokers.paper",
        "fbterm.risk",
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


MODULE_BUDGET = 600  # lines; issue 11: one job per module


def test_every_fbterm_module_stays_within_the_line_budget():
    # A module past the budget is doing more than one job: split it by job, not by line count.
    # fbterm/testing/ (the TWS wire-protocol test server) is test machinery, not the product.
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in (REPO / "fbterm").rglob("*.py")
        if "testing" not in path.relative_to(REPO / "fbterm").parts
    }
    assert len(sizes) > 100, sorted(sizes)  # the walk found the package, not an empty folder
    over = sorted(f"{name}: {n} lines" for name, n in sizes.items() if n > MODULE_BUDGET)
    assert not over, f"over the {MODULE_BUDGET}-line budget: {', '.join(over)}"
