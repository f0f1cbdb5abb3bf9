"""``fbterm data synth|show|clean|list`` end to end through fbterm.cli.main."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fbterm.cli import main
from fbterm.data.storage import DataStorage

pytestmark = pytest.mark.usefixtures("tmp_cwd")  # no stray ./config.toml


def test_synth_show_clean_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "xyz.csv"
    assert main(["data", "synth", "--symbol", "XYZ", "--bars", "500", "--bar-size", "1h",
                 "--seed", "5", "--out", str(out)]) == 0  # fmt: skip
    assert "wrote 500 1h bars of XYZ" in capsys.readouterr().out
    df = DataStorage(tmp_path, cache=False).load_from_csv(out)
    assert len(df) == 500
    assert main(["data", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert (
        "rows      500 good of 500 read" in shown
        and "gaps      0" in shown
        and "bad rows  0" in shown
    )
    cleaned = tmp_path / "daily.csv"
    assert main(["data", "clean", str(out), str(cleaned), "--resample", "1d"]) == 0
    # 500 hours from 2020-01-01 00:00 UTC touch 22 New York days (the first is Dec 31 there).
    assert "wrote 22 bars" in capsys.readouterr().out
    daily = DataStorage(tmp_path, cache=False).load_from_csv(cleaned)
    assert daily["volume"].sum() == df["volume"].sum()
    assert not list(tmp_path.glob(".*fbcache*"))  # the CLI leaves no cache next to user files


def test_synth_into_the_data_dir_and_list(
    fbterm_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "list"]) == 0
    assert "no bar files" in capsys.readouterr().out
    assert main(["data", "synth", "--symbol", "AAA", "--bars", "30"]) == 0
    assert main(["data", "synth", "--symbol", "BBB", "--bars", "60", "--bar-size", "5m"]) == 0
    assert (fbterm_home / "data" / "AAA" / "1d.csv").is_file()
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:3] == ["AAA", "1d", "30"]
    assert lines[3].split()[:3] == ["BBB", "5m", "60"]


BAD = "Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10.5,100\n2020-01-03,10,9,11,10.5,100\n"


def test_bad_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    assert main(["data", "clean", str(bad), str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"fbterm: {bad}: line 3: high < low (9 < 11)")
    assert not (tmp_path / "o.csv").exists()
    assert main(["data", "clean", str(bad), str(tmp_path / "o.csv"), "--on-bad-rows", "drop"]) == 0
    assert "dropped 1 (high < low)" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "o.csv")) == 1
    assert main(["data", "show", str(bad)]) == 0  # show reports bad rows instead of failing
    shown = capsys.readouterr().out
    assert "bad rows  1: dropped 1 (high < low)" in shown and "line 3: high < low (9 < 11)" in shown
    assert main(["data", "show", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"fbterm: {tmp_path / 'missing.csv'}: file not found"
    assert main(["data", "synth", "--bars", "10", "--bar-size", "fortnight", "--out", "x.csv"]) == 2
    assert "unknown bar size" in capsys.readouterr().err


def test_cli_import_stays_light() -> None:
    code = "import sys, fbterm.cli, fbterm.cli.data; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
