"""Hot updates through UpdatesManagement, against MiniEngine: a small but real implementation of
the UpdatableEngine protocol (strategies keyed by name; positions and open orders owned by the
engine, as in the real engine). An engine-level test of the real engine comes with the engine.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
import textwrap

import pandas as pd
import pytest

from fbterm.cli import main
from fbterm.control import ControlServer
from fbterm.ops.diagnostics import Diagnostics
from fbterm.ops.updates import UpdatableEngine, UpdatesManagement

pytestmark = pytest.mark.timeout(60)

V1 = """
import pandas as pd

class Momentum:
    VERSION = 1

    def __init__(self, window=3, scale=1.0):
        if int(window) < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = int(window)
        self.scale = float(scale)

    def analyze(self, bars):
        ret = bars["close"].pct_change(self.window)
        return (ret.apply(lambda r: 1.0 if r > 0 else (-1.0 if r < 0 else 0.0)) * self.scale).clip(-1, 1)

    def execute(self, target, position):
        return target * 100 - position
"""

V2 = V1.replace("VERSION = 1", "VERSION = 2").replace(
    "* self.scale).clip(-1, 1)", "* self.scale * 0.5).clip(-1, 1)"
)
V_SYNTAX = V1 + "\ndef broken(:\n"
V_RUNTIME = V1.replace("VERSION = 1", "VERSION = 3").replace(
    "ret = bars", "ret = 1 / 0; ret = bars"
)
V_RESUME_FAILS = V1.replace("VERSION = 1", "VERSION = 4") + textwrap.dedent("""
    def _on_resume(self):
        raise RuntimeError("cannot subscribe to market data")
    Momentum.on_resume = _on_resume
""")


class MiniEngine:
    """Implements UpdatableEngine. Positions/orders live here, never in strategy objects."""

    def __init__(self, config):
        self.config = config
        self.configs = {s.name: s for s in config.strategies}
        self.strategies = {n: self.build_strategy(c) for n, c in self.configs.items()}
        self.positions = {n: 0.0 for n in self.configs}
        self.open_orders = {n: [] for n in self.configs}
        self.paused: set[str] = set()
        self.events: list[tuple[str, str]] = []
        idx = pd.date_range("2025-01-02 14:30", periods=20, freq="1min", tz="UTC")
        self.bars = pd.DataFrame(
            {
                "open": 100.0,
                "high": 101.0,
                "low": 99.0,
                "volume": 1000.0,
                "close": [100 + math.sin(i / 3) for i in range(20)],
            },
            index=idx,
        )

    def strategy_names(self):
        return list(self.configs)

    def strategy_config(self, name):
        return self.configs[name]

    def strategy(self, name):
        return self.strategies[name]

    def build_strategy(self, config):
        mod, _, cls = config.cls.partition(":")
        return getattr(importlib.import_module(mod), cls)(**config.params)

    def validate_strategy(self, name, strategy):
        out = strategy.analyze(self.bars)
        if not isinstance(out, pd.Series) or len(out) != len(self.bars):
            raise ValueError("analyze must return one target per bar")
        if ((out.abs() > 1) & out.notna()).any():
            raise ValueError("targets must be within [-1, 1]")

    def pause_strategy(self, name):
        self.events.append(("pause", name))
        self.paused.add(name)

    def resume_strategy(self, name):
        self.events.append(("resume", name))
        hook = getattr(self.strategies[name], "on_resume", None)
        if hook is not None:
            hook()
        self.paused.discard(name)

    def replace_strategy(self, name, new_strategy, config):
        self.events.append(("replace", name))
        old, self.strategies[name] = self.strategies[name], new_strategy
        self.configs[name] = config
        return old

    def step(self, name):
        """Trade one bar: what a running engine does with a strategy (skipped while paused)."""
        if name in self.paused:
            return
        target = float(self.strategies[name].analyze(self.bars).iloc[-1])
        qty = self.strategies[name].execute(target, self.positions[name])
        self.positions[name] += qty


class RecordingChannel:
    name = "record"

    def __init__(self):
        self.sent = []

    def destinations(self):
        return ["mem"]

    def deliver(self, alert, destination):
        self.sent.append(alert)


@pytest.fixture
def setup(tmp_cwd, tmp_path, monkeypatch, request, make_config):
    mod = f"user_strats_{abs(hash(request.node.name)) % 10**8}"
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{mod}.py").write_text(V1)
    monkeypatch.syspath_prepend(str(src))
    # As if read from tmp_path/config.toml: updates' config files come from that folder.
    cfg = make_config(
        source=str(tmp_path / "config.toml"),
        market={"symbols": ["AAPL", "MSFT"]},
        strategies=[
            {
                "name": "mom",
                "class": f"{mod}:Momentum",
                "symbols": ["AAPL"],
                "params": {"window": 3},
            },
            {
                "name": "mom2",
                "class": f"{mod}:Momentum",
                "symbols": ["MSFT"],
                "params": {"window": 4},
            },
        ],
    )
    engine = MiniEngine(cfg)
    engine.step("mom")
    engine.step("mom2")
    engine.open_orders["mom"].append("o-42 BUY 10 AAPL LMT 99")
    ch = RecordingChannel()
    alerts_cfg = make_config().alerts
    diag = Diagnostics(
        alerts_cfg, tmp_path / "activity.jsonl", tmp_path / "outbox.sqlite", channels=[ch]
    )
    yield dataclasses.make_dataclass("S", ["engine", "mod", "src", "diag", "ch", "tmp"])(
        engine, mod, src, diag, ch, tmp_path
    )
    diag.close()
    sys.modules.pop(mod, None)


def write(s, code):
    (s.src / f"{s.mod}.py").write_text(code)


def test_mini_engine_implements_the_protocol(setup):
    """The engine double keeps the protocol's promises, so the tests here exercise
    UpdatesManagement and not a double that happens to let it pass."""
    e = setup.engine
    assert isinstance(e, UpdatableEngine)
    assert e.strategy_names() == ["mom", "mom2"]
    assert e.strategy_config("mom").params == {"window": 3}
    for lookup in (e.strategy_config, e.strategy):
        with pytest.raises(KeyError):
            lookup("nope")
    old = e.strategy("mom")
    new = e.build_strategy(e.strategy_config("mom"))
    assert type(new) is type(old) and new is not old
    e.validate_strategy("mom", new)  # a sound strategy passes the dry run
    e.pause_strategy("mom")
    assert e.replace_strategy("mom", new, e.strategy_config("mom")) is old
    assert e.strategy("mom") is new
    e.resume_strategy("mom")
    assert e.events[-3:] == [("pause", "mom"), ("replace", "mom"), ("resume", "mom")]


def test_param_update_keeps_positions_and_orders(setup):
    e = setup.engine
    pos, orders, old = (
        dict(e.positions),
        {k: list(v) for k, v in e.open_orders.items()},
        e.strategy("mom"),
    )
    assert pos["mom"] != 0
    res = UpdatesManagement(setup.diag).apply_update(
        e, strategy="mom", params={"window": 5, "scale": 0.5}
    )
    assert res.ok and res.kind == "params" and res.strategies == ("mom",) and not res.rolled_back
    new = e.strategy("mom")
    assert new is not old and (new.window, new.scale) == (5, 0.5)
    assert e.strategy_config("mom").params == {"window": 5, "scale": 0.5}
    assert e.positions == pos and e.open_orders == orders
    assert e.events == [("pause", "mom"), ("replace", "mom"), ("resume", "mom")]
    assert not e.paused
    e.step("mom")  # the new object trades the position the old one built
    assert e.positions["mom"] == pytest.approx(50.0)  # target 1 x scale 0.5 x 100
    assert [x.message for x in setup.diag.recent_activity(kind="update")] == ["updated mom"]


def test_code_update_loads_new_code_and_keeps_old_object_intact(setup):
    e = setup.engine
    old = e.strategy("mom")
    before = sys.modules[setup.mod]
    write(setup, V2)
    res = UpdatesManagement(setup.diag).apply_update(
        e, strategy="mom", code=f"{setup.mod}:Momentum"
    )
    assert res.ok and res.kind == "code"
    assert type(e.strategy("mom")).VERSION == 2
    assert (
        type(old).VERSION == 1 and type(e.strategy("mom2")).VERSION == 1
    )  # untouched objects keep v1
    assert sys.modules[setup.mod] is not before
    assert e.positions["mom"] == 100.0 and e.open_orders["mom"] == ["o-42 BUY 10 AAPL LMT 99"]


@pytest.mark.parametrize(
    ("code", "params", "why"),
    [
        (V_SYNTAX, None, "SyntaxError"),
        (V_RUNTIME, None, "ZeroDivisionError"),
        (V1, {"window": 1}, "window must be >= 2"),
    ],
    ids=["syntax-error", "fails-validation", "bad-params"],
)
def test_invalid_update_is_refused_before_anything_changes(setup, code, params, why):
    e = setup.engine
    old, mod_before = e.strategy("mom"), sys.modules[setup.mod]
    write(setup, code)
    kwargs = {"params": params} if params else {"code": f"{setup.mod}:Momentum"}
    res = UpdatesManagement(setup.diag).apply_update(e, strategy="mom", **kwargs)
    assert not res.ok and not res.rolled_back
    assert why in res.message
    assert e.strategy("mom") is old and e.events == [] and not e.paused
    assert sys.modules[setup.mod] is mod_before
    assert e.strategy_config("mom").params == {"window": 3}
    assert setup.diag.flush(10)
    assert [a.title for a in setup.ch.sent] == ["update of mom refused"]


def test_failure_during_swap_rolls_back_and_alerts(setup):
    e = setup.engine
    old, mod_before = e.strategy("mom"), sys.modules[setup.mod]
    write(setup, V_RESUME_FAILS)
    res = UpdatesManagement(setup.diag).apply_update(
        e, strategy="mom", code=f"{setup.mod}:Momentum"
    )
    assert not res.ok and res.rolled_back
    assert "resume failed" in res.message and "cannot subscribe" in res.message
    assert e.strategy("mom") is old and not e.paused
    assert e.strategy_config("mom").cls == f"{setup.mod}:Momentum" and e.strategy_config(
        "mom"
    ).params == {"window": 3}
    assert sys.modules[setup.mod] is mod_before
    assert e.positions["mom"] == 100.0 and e.open_orders["mom"] == ["o-42 BUY 10 AAPL LMT 99"]
    assert setup.diag.flush(10)
    [alert] = setup.ch.sent
    assert alert.severity.value == "error" and alert.kind == "update_failed"
    assert "rolled back" in alert.body


def _config_text(mod, mom_params, mom2_params, extra=""):
    return textwrap.dedent(f'''
        [market]
        symbols = ["AAPL", "MSFT"]
        {extra}
        [[strategies]]
        name = "mom"
        class = "{mod}:Momentum"
        symbols = ["AAPL"]
        params = {mom_params}

        [[strategies]]
        name = "mom2"
        class = "{mod}:Momentum"
        symbols = ["MSFT"]
        params = {mom2_params}
    ''')


def test_config_update_swaps_changed_strategies_only(setup):
    e = setup.engine
    path = setup.tmp / "new.toml"
    path.write_text(
        _config_text(setup.mod, "{ window = 3 }", "{ window = 7 }")
        + "\n[risk]\nmax_drawdown_pct = 5.0\n"
    )
    res = UpdatesManagement(setup.diag).apply_update(e, config=path)
    assert res.ok and res.strategies == ("mom2",)
    assert e.strategy("mom2").window == 7
    assert res.not_applied == ("[risk]",)
    assert "needs a restart: [risk]" in res.message


def test_config_update_is_all_or_nothing(setup):
    e = setup.engine
    old = dict(e.strategies)
    # mom2 gets code whose resume hook fails: mom, already swapped, must be rolled back too.
    (setup.src / f"{setup.mod}_v4.py").write_text(V_RESUME_FAILS)
    text = _config_text(setup.mod, "{ window = 9 }", "{ window = 4 }").replace(
        f'class = "{setup.mod}:Momentum"\n        symbols = ["MSFT"]'.replace("        ", ""),
        f'class = "{setup.mod}_v4:Momentum"\nsymbols = ["MSFT"]',
    )
    assert f"{setup.mod}_v4" in text
    path = setup.tmp / "new.toml"
    path.write_text(text)
    try:
        res = UpdatesManagement(setup.diag).apply_update(e, config=path)
    finally:
        sys.modules.pop(f"{setup.mod}_v4", None)
    assert not res.ok and res.rolled_back and set(res.strategies) == {"mom", "mom2"}
    assert e.strategies == old and not e.paused
    assert e.strategy_config("mom").params == {"window": 3}


def test_config_update_refuses_an_invalid_file(setup):
    path = setup.tmp / "bad.toml"
    path.write_text(
        _config_text(setup.mod, "{ window = 3 }", "{ window = 4 }")
        + "\n[risk]\nmax_drawdwn_pct = 5\n"
    )
    res = UpdatesManagement(setup.diag).apply_update(setup.engine, config=path)
    assert not res.ok and "risk.max_drawdwn_pct: unknown key" in res.message
    assert setup.engine.events == []


# ------------------------------------------------------------------ over the control socket


@pytest.fixture
def served(setup):
    sock = setup.tmp / "run" / "control.sock"
    updates = UpdatesManagement(setup.diag)
    # The real engine marshals this onto its own thread; MiniEngine has no thread of its own.
    server = ControlServer(sock, {"update": lambda req: updates.handle_request(setup.engine, req)})
    server.start()
    yield setup, sock
    server.stop()


def test_fbterm_update_params_over_the_socket(served, capsys):
    s, sock = served
    rc = main(
        [
            "update",
            "--socket",
            str(sock),
            "--strategy",
            "mom",
            "--param",
            "window=6",
            "--param",
            "scale=0.25",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "updated mom"
    assert (s.engine.strategy("mom").window, s.engine.strategy("mom").scale) == (6, 0.25)
    assert s.engine.positions["mom"] == 100.0


def test_fbterm_update_code_and_config_over_the_socket(served, capsys):
    s, sock = served
    write(s, V2)
    assert (
        main(["update", "--socket", str(sock), "--strategy", "mom2", "--code", f"{s.mod}:Momentum"])
        == 0
    )
    assert type(s.engine.strategy("mom2")).VERSION == 2
    capsys.readouterr()
    cfg = s.tmp / "new.toml"
    cfg.write_text(
        _config_text(s.mod, "{ window = 8 }", "{ window = 4 }")
        + f'\n[control]\nsocket = "{sock}"\n'
    )
    assert main(["update", "--config", str(cfg)]) == 0  # the socket comes from the config
    assert "updated mom" in capsys.readouterr().out
    assert s.engine.strategy("mom").window == 8


def test_fbterm_update_failure_exits_nonzero(served, capsys):
    s, sock = served
    write(s, V_SYNTAX)
    assert (
        main(["update", "--socket", str(sock), "--strategy", "mom", "--code", f"{s.mod}:Momentum"])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("fbterm: invalid update:") and "SyntaxError" in err
    assert main(["update", "--socket", str(sock), "--strategy", "nope", "--param", "a=1"]) == 1
    assert "no strategy named 'nope'" in capsys.readouterr().err


def test_fbterm_update_without_a_running_engine(tmp_path, capsys):
    assert (
        main(
            ["update", "--socket", str(tmp_path / "none.sock"), "--strategy", "x", "--param", "a=1"]
        )
        == 1
    )
    assert "no running fbterm" in capsys.readouterr().err
    assert main(["update", "--strategy", "x"]) == 2
    assert "needs --param" in capsys.readouterr().err
