"""The suite's own rules, checked on its source so they hold for tests written later:

* no fixed sleep as synchronisation: only :mod:`waiting` polls (a zero-length sleep, which
  only yields to the event loop, is allowed);
* no ``pytest.importorskip``: an import error in our code or a declared test dependency must
  fail, not skip;
* every hypothesis test has a deadline per example and a hard timeout for the whole test, so
  a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SOURCES = sorted(p for p in TESTS.glob("*.py") if p.name != "waiting.py")


def calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def name_of(call: ast.Call) -> str:
    return ast.unparse(call.func)


def waits_a_fixed_time(call: ast.Call) -> bool:
    name = name_of(call)
    if not (name.endswith("sleep") or name.endswith(".pause")):
        return False
    if not call.args:
        return False  # pilot.pause() waits for the app to be idle: a condition
    arg = call.args[0]
    return not (isinstance(arg, ast.Constant) and arg.value == 0)


def fixed_waits(source: str) -> list[str]:
    tree = ast.parse(source)
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for call in calls(fn):
            # a fake sleep that only records or moves a fake clock is not a wait
            if waits_a_fixed_time(call) and fn.name != "sleep":
                out.append(f"{fn.name}: {ast.unparse(call)}")
    return sorted(set(out))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_fixed_sleeps_as_synchronisation(path: Path) -> None:
    assert fixed_waits(path.read_text()) == []


def test_the_sleep_check_notices_a_sleep() -> None:
    src = "import time\ndef test_x(pilot):\n    time.sleep(0.2)\n    pilot.pause()\n"
    assert fixed_waits(src) == ["test_x: time.sleep(0.2)"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_nothing_skips_on_an_import(path: Path) -> None:
    assert "importorskip" not in [
        name_of(c).split(".")[-1] for c in calls(ast.parse(path.read_text()))
    ]


def hypothesis_tests_without_limits(source: str) -> list[str]:
    tree = ast.parse(source)
    module_timeout = "timeout" in ast.unparse(
        next(
            (n for n in tree.body if isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n)),
            ast.Pass(),
        )
    )
    bad = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        decorators = [ast.unparse(d) for d in fn.decorator_list]
        if not any(d.startswith("given(") for d in decorators):
            continue
        settings = [d for d in fn.decorator_list if ast.unparse(d).startswith("settings(")]
        deadline = [
            k.value
            for s in settings
            if isinstance(s, ast.Call)
            for k in s.keywords
            if k.arg == "deadline"
        ]
        has_deadline = bool(deadline) and not (
            isinstance(deadline[0], ast.Constant) and deadline[0].value is None
        )
        has_timeout = module_timeout or any("mark.timeout(" in d for d in decorators)
        if not (has_deadline and has_timeout):
            bad.append(fn.name)
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_hypothesis_test_has_a_deadline_and_a_timeout(path: Path) -> None:
    assert hypothesis_tests_without_limits(path.read_text()) == []


def test_the_hypothesis_check_notices_a_missing_limit() -> None:
    src = (
        "@settings(max_examples=5, deadline=None)\n@given(st.integers())\ndef test_a(x): pass\n"
        "@pytest.mark.timeout(9)\n@settings(deadline=100)\n@given(st.integers())\n"
        "def test_b(x): pass\n"
    )
    assert hypothesis_tests_without_limits(src) == ["test_a"]
