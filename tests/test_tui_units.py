"""Console pieces in isolation: keymap rules, diffed keyed tables, snapshot coalescing,
themes shipped as package data, and the console's distance from trading state."""

from __future__ import annotations

import ast
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from tui_support import FrozenEngine, fixed_snapshot, run_async
from waiting import async_wait_until

from fbterm.config import config_from_dict, default_config, to_dict
from fbterm.tui import themes
from fbterm.tui.app import FbtermApp, SnapshotReady, run_app
from fbterm.tui.keymap import ACTIONS, Keymap, KeymapError, textual_keymap
from fbterm.tui.positions import PositionsTable
from fbterm.tui.table import Column, KeyedTable, Row

# ------------------------------------------------------------------------------ keymap


def test_keymap_defaults_are_unique_and_avoid_home_end() -> None:
    km = Keymap.build()
    keys = [k for a in ACTIONS for k in km.keys[a.id].split(",")]
    assert len(keys) == len(set(keys))
    assert not {"home", "end"} & set(keys)
    assert km.display("help") == "?"
    assert km.needs_confirm("flatten") and not km.needs_confirm("halt")


def test_keymap_overrides_and_errors() -> None:
    km = Keymap.build({"halt": "x", "help": "?"}, {"flatten": False})
    assert km.keys["halt"] == "x" and textual_keymap(km) == {"halt": "x"}
    assert not km.needs_confirm("flatten")
    with pytest.raises(KeymapError, match="did you mean 'halt'"):
        Keymap.build({"hlt": "x"})
    with pytest.raises(KeymapError, match="tmux"):
        Keymap.build({"halt": "home"})
    with pytest.raises(KeymapError, match="already bound to 'halt'"):
        Keymap.build({"flatten": "h"})
    with pytest.raises(KeymapError, match=r"ui\.confirm\.nope"):
        Keymap.build(None, {"nope": False})


def test_run_app_refuses_a_bad_keymap_before_starting_the_engine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = to_dict(default_config())
    data["ui"]["keys"] = {"quit": "end"}
    assert run_app(config_from_dict(data, "config.toml")) == 2
    assert "ui.keys.quit" in capsys.readouterr().err


# ------------------------------------------------------------------------------ tables


class _Table(KeyedTable):
    COLUMNS = (
        Column("k", "Key", 6),
        Column("v", "Value", 8, right=True),
        Column("x", "Extra", 10, prio=5),
    )
    DEFAULT_SORT = "v"


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield _Table(id="t")


def _rows(values: dict[str, float]) -> list[Row]:
    return [
        Row(k, {"k": (k, ""), "v": (f"{v:.1f}", "up"), "x": ("", "")}, {"v": v})
        for k, v in values.items()
    ]


@run_async
async def test_keyed_table_diffs_keeps_cursor_and_sorts_stably() -> None:
    app = _TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        t = app.query_one(_Table)
        t.set_rows(_rows({"a": 3, "b": 1, "c": 2, "d": 2}))
        await pilot.pause()
        assert t.keys == ["b", "c", "d", "a"]  # equal values keep key order
        t.select_key("a")
        written = t.updates
        t.set_rows(_rows({"a": 3, "b": 1, "c": 2, "d": 2}))
        assert t.updates == written  # identical rows: nothing written
        t.set_rows(_rows({"a": 0.5, "b": 1, "c": 2, "d": 2}))
        assert t.updates == written + 1  # one changed cell, one write
        assert t.keys == ["a", "b", "c", "d"] and t.selected_key == "a"  # cursor followed its row
        t.set_filter("c")
        assert t.keys == ["c"]
        t.set_filter("")
        t.reverse_sort()
        assert t.keys == ["d", "c", "b", "a"]


@run_async
async def test_narrow_tables_drop_low_priority_columns() -> None:
    app = _TableApp()
    async with app.run_test(size=(24, 10)) as pilot:
        await pilot.pause()
        assert [c.key for c in app.query_one(_Table).active_columns] == ["k", "v"]


# ------------------------------------------------------------------------------ engine link


@run_async
async def test_a_snapshot_flood_queues_at_most_one_message() -> None:
    seen: list[Any] = []
    engine = FrozenEngine()
    app = FbtermApp(engine, None, handle_signals=False)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await async_wait_until(lambda: app.frames > 0, "the first frame")
        engine.stop()  # only the flood publishes from here on
        base = fixed_snapshot()

        def flood() -> None:
            for i in range(20_000):
                app._on_engine_snapshot(dataclasses.replace(base, seq=1000 + i))

        n0 = sum(isinstance(m, SnapshotReady) for m in seen)
        th = threading.Thread(target=flood)
        th.start()
        th.join()
        await pilot.press("question_mark")  # a key right after the flood is handled at once
        assert type(app.screen).__name__ == "HelpScreen"
        await async_wait_until(
            lambda: app.snapshot is not None and app.snapshot.seq == 1000 + 19_999,
            "the newest snapshot of the flood rendered",
        )
        flood_msgs = sum(isinstance(m, SnapshotReady) for m in seen) - n0
        assert flood_msgs < 200  # coalesced: 20,000 snapshots, a handful of messages


@run_async
async def test_outcomes_reach_log_and_notifications() -> None:
    engine = FrozenEngine()
    app = FbtermApp(engine, None, handle_signals=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await async_wait_until(lambda: app.frames > 0, "the first frame")
        await pilot.press("h")

        def log_text() -> str:
            return "\n".join(line.text for line in app.screen.query_one("#log").lines)  # type: ignore[attr-defined]

        await async_wait_until(lambda: "halt trading: accepted" in log_text(), "the outcome")
        assert type(engine.commands[-1]).__name__ == "Halt"
        assert not app.pending
        assert any("accepted" in str(n.message) for n in app._notifications)


# ------------------------------------------------------------------------------ themes


def test_three_themes_come_from_the_one_themes_folder() -> None:
    assert themes.builtin_names()[:3] == ["dark", "light", "high-contrast"]
    # The editable install maps fbterm.themes to the repo's top-level themes/ (the only copy).
    repo_themes = Path(__file__).resolve().parent.parent / "themes"
    for name in ("dark", "light", "high-contrast"):
        tf = themes.load_theme(name)
        assert Path(tf.path).resolve().parent == repo_themes
        for cls in ("tone--up", "tone--down", "-warn", "-breach", "-live", "-halted"):
            assert cls in tf.css, (name, cls)
    with pytest.raises(themes.ThemeError, match="unknown theme"):
        themes.load_theme("neon")


@run_async
async def test_every_theme_parses_in_the_app() -> None:
    for name in themes.builtin_names():
        app = FbtermApp(FrozenEngine(), None, theme_name=name, handle_signals=False)
        async with app.run_test(size=(80, 24)):
            await async_wait_until(lambda a=app: a.frames > 0, f"the first frame in {name}")
            up = app.screen.query_one(PositionsTable).get_component_rich_style(
                "tone--up", partial=True
            )
            down = app.screen.query_one(PositionsTable).get_component_rich_style(
                "tone--down", partial=True
            )
            assert up.color is not None and up.color != down.color, name


# ------------------------------------------------------------------------------ boundaries


def test_console_never_imports_trading_internals() -> None:
    """The UI sends commands and reads snapshots; it has no path to orders, journal, risk
    state or brokers (run_app's lazy Engine import is the one allowed link)."""
    forbidden = (
        "fbterm.execution.orders",
        "fbterm.journal",
        "fbterm.risk",  # the gate, strategy exits and stop rules alike
        "fbterm.execution.brokers",
        "fbterm.execution.costs",
        "fbterm.metrics",
    )
    tui = Path(themes.__file__).resolve().parent
    for path in tui.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(forbidden), f"{path.name} imports {n}"
                if n == "fbterm.engine":
                    assert path.name == "app.py"


def test_key_names_agree_with_textual() -> None:
    """The key rules (fbterm.tui.keys) import nothing from Textual, so the CLI can check a key
    map without the UI; this keeps their names in step with Textual's own."""
    from textual.keys import Keys, _character_to_key

    from fbterm.tui.keys import CHAR_KEYS, char_key, key_problem

    for i in range(33, 127):
        assert char_key(chr(i)) == _character_to_key(chr(i)), chr(i)
    for k in Keys:
        # <any>, <scroll-up>, ...: events, not keys; "ctrl-at" is a legacy alias of ctrl+@.
        if not k.value.startswith("<") and k.value != "ctrl-at":
            assert key_problem(k.value) is None, k.value
    assert set(CHAR_KEYS.values()) == {chr(i) for i in range(33, 127)}
