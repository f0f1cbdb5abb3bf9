"""Hot updates load code only from strategy folders and configs only from the running config's
folder, and check both before anything of the code runs. The modules here leave a marker file
when imported, so "refused before import" is something the test can see."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fbterm import commands as C
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.ops.strategy_files import (
    SourceError,
    check_strategy_code,
    check_update_config,
    find_module_file,
    strategy_folders,
)

pytestmark = pytest.mark.timeout(60)

STRATEGY = textwrap.dedent("""
    from pathlib import Path
    Path({marker!r}).write_text("imported")

    from fbterm.strategies.sma_cross import SmaCross

    class Mine(SmaCross):
        name = "mine"
""")


def write_module(folder: Path, name: str, marker: Path, body: str = STRATEGY) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(body.format(marker=str(marker)))


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """A config folder with a strategies package in it, and a folder outside it; both on
    sys.path, as an operator's PYTHONPATH would put them."""
    conf_dir = tmp_path / "deploy"
    pkg = conf_dir / "strats_ok"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.syspath_prepend(str(conf_dir))
    monkeypatch.syspath_prepend(str(elsewhere))
    yield {"conf_dir": conf_dir, "pkg": pkg, "elsewhere": elsewhere, "tmp": tmp_path}
    for name in list(sys.modules):
        if name.startswith(("strats_ok", "outside_mod")):
            sys.modules.pop(name, None)


@pytest.fixture
def engine(layout: dict[str, Path], make_config: Callable[..., Config]) -> Iterator[Engine]:
    tmp = layout["tmp"]
    cfg = make_config(
        source=str(layout["conf_dir"] / "config.toml"),
        journal={"path": str(tmp / "j.sqlite")},
        log={"path": str(tmp / "activity.jsonl")},
        strategies=[{"name": "sma", "class": "sma_cross", "symbols": ["AAPL"]}],
    )
    e = Engine(cfg)
    yield e
    e.stop()


def update(engine: Engine, code: str) -> tuple[bool, str]:
    ok, msg = engine.handlers.handle(C.UpdateStrategy(name="sma", cls=code))
    return ok, msg


def test_code_outside_the_strategy_folders_is_never_imported(
    engine: Engine, layout: dict[str, Path]
) -> None:
    marker = layout["tmp"] / "imported.txt"
    write_module(layout["elsewhere"], "outside_mod", marker)
    ok, msg = update(engine, "outside_mod:Mine")
    assert not ok and "is not in a strategy folder" in msg
    assert not marker.exists() and "outside_mod" not in sys.modules
    # The standard library and fbterm itself are not strategy folders either.
    for code in ("os:system", "subprocess:Popen", "fbterm.cli.__main__:X"):
        ok, msg = update(engine, code)
        assert not ok and "not in a strategy folder" in msg, msg
    ok, msg = update(engine, "sys:X")
    assert not ok and "built into Python" in msg
    assert type(engine.executor.slots["sma"].strategy).__name__ == "SmaCross"


def test_a_file_without_the_class_is_refused_before_import(
    engine: Engine, layout: dict[str, Path]
) -> None:
    marker = layout["tmp"] / "imported.txt"
    write_module(layout["pkg"], "nothing_here", marker, 'open({marker!r}, "w")\nX = 1\n')
    ok, msg = update(engine, "strats_ok.nothing_here:Mine")
    assert not ok and "defines no class 'Mine'" in msg
    assert not marker.exists()


def test_a_strategy_in_the_config_folder_loads(engine: Engine, layout: dict[str, Path]) -> None:
    marker = layout["tmp"] / "imported.txt"
    write_module(layout["pkg"], "mine", marker)
    ok, msg = update(engine, "strats_ok.mine:Mine")
    assert ok, msg
    assert marker.exists()
    assert type(engine.executor.slots["sma"].strategy).__name__ == "Mine"


def test_folders_of_configured_strategies_are_strategy_folders(
    layout: dict[str, Path], make_config: Callable[..., Config]
) -> None:
    marker = layout["tmp"] / "imported.txt"
    write_module(layout["elsewhere"], "outside_mod", marker)
    cfg = make_config(strategies=[{"name": "m", "class": "outside_mod:Mine"}])
    folders = strategy_folders(cfg)
    assert layout["elsewhere"].resolve() in folders
    assert check_strategy_code("outside_mod:Mine", folders) == find_module_file("outside_mod")
    assert not marker.exists()  # finding it ran none of it
    with pytest.raises(SourceError, match=r"expected 'package\.module:ClassName'"):
        check_strategy_code("outside_mod", folders)


def test_update_configs_come_only_from_the_config_folder(
    engine: Engine, layout: dict[str, Path]
) -> None:
    from fbterm.ops.updates import UpdatesManagement

    text = '[[strategies]]\nname = "sma"\nclass = "sma_cross"\nsymbols = ["AAPL"]\nparams = { fast = 3 }\n'
    outside = layout["elsewhere"] / "new.toml"
    outside.write_text(text)
    inside = layout["conf_dir"] / "new.toml"
    inside.write_text(text)
    um = UpdatesManagement(engine.diagnostics)
    res = um.apply_update(engine.strategies, config=str(outside))
    assert not res.ok and "must be in the running config's folder" in res.message
    assert engine.strategy_config("sma").params == {}
    res = um.apply_update(engine.strategies, config=str(inside))
    assert res.ok, res.message
    assert engine.strategy_config("sma").params == {"fast": 3}


def test_an_engine_with_no_config_file_takes_no_config_files(
    make_config: Callable[..., Any], tmp_path: Path
) -> None:
    cfg = make_config()  # built in code: source "<dict>"
    with pytest.raises(SourceError, match="came from no file"):
        check_update_config(tmp_path / "x.toml", cfg)
