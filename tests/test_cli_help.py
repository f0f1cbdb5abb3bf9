"""Every command's --help renders (a stray '%' in a help string breaks argparse only at help
time), `fbterm --version` works, and `fbterm backtest --on-bad-rows drop` takes a damaged file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fbterm import __version__
from fbterm.cli import main
from fbterm.cli.dispatch import build_parser
from fbterm.strategies import STRATEGIES

COMMANDS = [
    [],
    ["check-config"],
    ["strategies"],
    ["run"],
    ["data"],
    ["data", "synth"],
    ["data", "show"],
    ["data", "clean"],
    ["data", "list"],
    ["backtest"],
    ["log"],
    ["update"],
    ["alert-test"],
    ["status"],
    ["orders"],
    ["positions"],
    ["halt"],
    ["resume"],
    ["flatten"],
    ["order"],
    ["cancel"],
]


def parser_for(cmd: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in cmd:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "fbterm")
def test_help_renders(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    # The help is this command's own: its usage line, every option it takes, every
    # subcommand under it.
    assert out.startswith(" ".join(["usage: fbterm", *cmd]))
    parser = parser_for(cmd)
    for action in parser._actions:
        for option in action.option_strings:
            assert option in out, option
        if isinstance(action, argparse._SubParsersAction):
            for choice in action.choices:
                assert choice in out, choice
    if parser.description:
        assert " ".join(parser.description.split()[:3]) in " ".join(out.split())


def test_every_subcommand_is_covered() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    listed = {c[0] for c in COMMANDS if c}
    assert set(sub.choices) <= listed


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fbterm", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"fbterm {__version__}"


def test_backtest_drops_bad_rows_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["Date,Open,High,Low,Close,Volume"]
    price = 100.0
    for i in range(300):
        price *= 1.01 if (i // 7) % 2 else 0.99
        rows.append(
            f"2020-01-{1 + i % 28:02d}T{i // 28:02d}:00:00,{price},{price * 1.01},{price * 0.99},{price},1000"
        )
    rows[50] = "2020-02-01,10,5,9,9,1000"  # high < low
    rows[60] = "2020-02-02,10,11,9,n/a,1000"  # not a number
    f = tmp_path / "bars.csv"
    f.write_text("\n".join(rows) + "\n")
    assert main(["backtest", "--data", str(f), "--strategy", "sma_cross", "--json"]) == 2
    assert "line 51" in capsys.readouterr().err
    assert (
        main(
            [
                "backtest",
                "--data",
                str(f),
                "--strategy",
                "sma_cross",
                "--on-bad-rows",
                "drop",
                "--json",
            ]
        )
        == 0
    )
    assert '"bars": 298' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            'class = "sma_cross"\nparams = { fast = 30, slow = 20 }',
            "strategies[0].params.fast: must be < slow (20), got 30",
        ),
        (
            'class = "sma_cross"\nparams = { fastt = 3 }',
            "strategies[0].params.fastt: unknown for sma_cross (known: fast, slow)",
        ),
        (
            'class = "sma_cross"\nparams = { fast = "x" }',
            "strategies[0].params.fast: expected int, got 'x'",
        ),
        (
            'class = "nomod.x:Y"',
            "strategies[0].class: strategy 'nomod.x:Y': module 'nomod' not found",
        ),
    ],
)
def test_bad_strategy_config_is_one_line_naming_the_key(
    strategy: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "config.toml"
    f.write_text(f'[[strategies]]\nname = "x"\nsymbols = ["AAPL"]\n{strategy}\n')
    assert main(["check-config", str(f)]) == 2
    assert main(["run", "--headless", "--config", str(f), "--duration", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fbterm: {f}: {expected}"] * 2


def test_strategies_lists_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    blocks = {b.split(":", 1)[0]: b for b in out.strip().split("\n\n")}
    assert list(blocks) == list(STRATEGIES)
    for name, cls in STRATEGIES.items():
        lines = blocks[name].splitlines()[1:]
        # one line per parameter, in order: its name, type, default and help
        assert len(lines) == len(cls.describe_params())
        for line, p in zip(lines, cls.describe_params(), strict=True):
            words = line.split()
            assert words[:4] == [p["name"], p["type"], "default", str(p["default"])], line
            assert p["help"] in line
    assert main(["strategies", "nope"]) == 2


def test_sweep_drops_bad_rows_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["Date,Open,High,Low,Close,Volume"]
    price = 100.0
    for i in range(200):
        price *= 1.01 if (i // 6) % 2 else 0.99
        rows.append(
            f"2021-{1 + i // 28:02d}-{1 + i % 28:02d},{price},{price * 1.01},{price * 0.99},{price},1000"
        )
    rows[30] = "2021-02-02,10,5,9,9,1000"  # high < low
    f = tmp_path / "bars.csv"
    f.write_text("\n".join(rows) + "\n")
    args = [
        "backtest",
        "--data",
        str(f),
        "--strategy",
        "sma_cross",
        "--sweep",
        "fast=3:6:3",
        "--param",
        "slow=10",
        "--workers",
        "1",
        "--json",
    ]
    assert main(args) == 2
    capsys.readouterr()
    assert main([*args, "--on-bad-rows", "drop"]) == 0
    table = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["fast"] for r in table) == [3, 6]  # fast=3:6:3, slow fixed at 10
    assert all(int(r["slow"]) == 10 for r in table)
