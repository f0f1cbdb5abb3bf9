"""The wheel a user installs carries every fbterm package and the one copy of the themes.

Builds a real wheel from this checkout (no network: the build backend comes from the test
extra, so ``--no-build-isolation``) and looks inside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parent.parent


def _declared_packages() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["tool"]["setuptools"]["packages"])


def test_pyproject_names_every_package_under_fbterm() -> None:
    found = set(setuptools.find_packages(str(ROOT), include=["fbterm", "fbterm.*"]))
    declared = set(_declared_packages())
    assert found - declared == set(), "packages missing from [tool.setuptools] packages"
    assert declared - found == {"fbterm.themes"}, "stale entries in [tool.setuptools] packages"


@pytest.mark.slow
def test_wheel_ships_themes_and_tui_styles(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("fbterm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("fbterm/themes/")}
    repo = {p.name for p in (ROOT / "themes").glob("*.tcss")}
    assert {"dark.tcss", "light.tcss", "high-contrast.tcss"} <= repo
    assert repo <= shipped
    assert "fbterm/py.typed" in names
    for pkg in _declared_packages():
        if pkg != "fbterm.themes":
            assert pkg.replace(".", "/") + "/__init__.py" in names, pkg
    assert not (ROOT / "fbterm" / "themes").exists(), "a second copy of the themes is back"

    # Installed from that wheel (not this checkout), the console finds the shipped themes.
    target = tmp_path / "site"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stderr[-2000:]
    probe = (
        "from fbterm.tui import themes; t = themes.load_theme('dark'); "
        "print(themes.builtin_names()); print(t.path)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    names, path = run.stdout.splitlines()
    assert names == "['dark', 'light', 'high-contrast']"
    assert Path(path).resolve().is_relative_to(target.resolve())
