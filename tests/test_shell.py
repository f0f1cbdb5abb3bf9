"""The operator shell (fbterm status/orders/positions/halt/resume/flatten/order/cancel) against a
real engine: an in-process Engine serving the real control socket (paper broker, simulated
market, SQLite journal), one real `fbterm run --headless` subprocess, and the journal fallback
when no engine runs. Nothing is mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from fbterm.cli import main
from fbterm.cli.errors import EXIT_NO_ENGINE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.ops.shell import ORDER_KEYS, POSITION_KEYS

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("tmp_cwd")]


@pytest.fixture
def cfg(tmp_path: Path, make_config: Callable[..., Config]) -> Config:
    """Paper broker on the simulated market, no strategies: only the operator trades."""
    return make_config(
        market={"symbols": ["AAPL", "MSFT"], "simulated": {"ticks_per_second": 20.0}},
        journal={"path": str(tmp_path / "journal.sqlite")},
        log={"path": str(tmp_path / "activity.jsonl")},
        control={"socket": str(tmp_path / "ctl.sock")},
        risk={"max_orders_per_second": 1000.0},
        broker={"paper": {"participation": 1.0}},
    )


@pytest.fixture
def engine(cfg: Config) -> Iterator[Engine]:
    e = Engine(cfg)
    e.start(control=True)
    try:
        wait_until(lambda: e.mark("AAPL") and e.mark("MSFT"), "prices")
        yield e
    finally:
        e.stop()


Shell = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sh(cfg: Config, capsys: pytest.CaptureFixture[str]) -> Shell:
    """``sh("order", "buy", "AAPL", "1")``: the CLI in this process -> (exit code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(
            [
                *args,
                "--socket",
                str(cfg.control_socket_path),
                "--journal",
                str(cfg.journal_path),
            ]
        )
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def sh_json(sh: Shell, *args: str) -> tuple[int, dict[str, Any]]:
    rc, out, err = sh(*args, "--json")
    assert out, err
    return rc, json.loads(out)


# ------------------------------------------------------------------ reading a running engine


def test_status_orders_and_positions_of_a_running_engine(engine: Engine, sh: Shell) -> None:
    rc, out, _ = sh("status")
    assert rc == EXIT_OK
    assert f"engine: running (pid {os.getpid()})" in out and "trading: ACTIVE" in out
    rc, doc = sh_json(sh, "status")
    assert rc == EXIT_OK
    assert (doc["schema"], doc["source"], doc["running"], doc["trading_state"]) == (
        1,
        "engine",
        True,
        "ACTIVE",
    )
    assert doc["journal"] == str(engine.journal.path)

    assert sh("orders")[1] == "no working orders\n"
    assert sh("positions")[1] == "no open positions\n"
    rc, out, _ = sh("order", "buy", "AAPL", "10")
    assert rc == EXIT_OK
    wait_until(lambda: engine.call(lambda: engine.oms.position("AAPL")) == 10, "the buy filled")
    rc, doc = sh_json(sh, "positions")
    [pos] = doc["positions"]
    assert tuple(pos) == POSITION_KEYS
    assert (pos["symbol"], pos["quantity"], pos["strategies"]) == ("AAPL", 10.0, ["manual"])
    assert pos["last"] is not None and doc["source"] == "engine"
    rc, out, _ = sh("positions")
    assert out.splitlines()[1].split()[:2] == ["AAPL", "10"]


def test_an_order_is_answered_with_its_id_and_status(engine: Engine, sh: Shell) -> None:
    last = engine.mark("AAPL")
    assert last is not None
    limit = round(last * 0.98, 2)  # inside the 5% collar, below the market: it works
    rc, doc = sh_json(sh, "order", "buy", "AAPL", "5", "--limit", str(limit), "--tif", "GTC")
    assert rc == EXIT_OK and doc["ok"] is True
    [o] = doc["orders"]
    assert tuple(o) == ORDER_KEYS
    ours = engine.call(lambda: engine.oms.orders[o["id"]])
    assert (o["side"], o["quantity"], o["type"], o["limit"], o["tif"], o["strategy"]) == (
        "BUY",
        5.0,
        "LMT",
        limit,
        "GTC",
        "manual",
    )
    assert o["status"] == "Submitted" == ours.status.value
    assert doc["message"] == f"new order {o['id']} BUY 5 AAPL LMT: Submitted"
    rc, doc = sh_json(sh, "orders")
    assert [x["id"] for x in doc["orders"]] == [o["id"]]
    rc, out, _ = sh("orders")
    assert o["id"] in out and "Submitted" in out


def test_refusals_exit_3_with_the_engine_reason(engine: Engine, sh: Shell) -> None:
    last = engine.mark("AAPL")
    assert last is not None
    cases = [
        (("order", "buy", "AAPL", "5", "--limit", str(round(last * 0.5, 2))), "price_collar"),
        (("order", "buy", "AAPL", "5", "--strategy", "nope"), "unknown strategy 'nope'"),
        (("order", "buy", "TSLA", "5"), "unknown symbol 'TSLA'"),
        (("order", "buy", "AAPL 20200117 C150", "1"), "the contract expired on 2020-01-17"),
        (("order", "buy", "AAPL 20991218 C150", "1"), "unknown contract"),
        (("order", "sell", "MSFT", "1000000"), "max_order_value"),
        (("cancel", "FB-999999"), "unknown order 'FB-999999'"),
        (("resume",), "already ACTIVE"),
    ]
    for args, why in cases:
        rc, out, err = sh(*args)
        assert rc == EXIT_REFUSED, (args, out, err)
        assert out.startswith("REFUSED: ") and why in out, (args, out)
    # A refused order is journaled as rejected, with the gate's reason, and says which it was.
    rc, doc = sh_json(sh, "order", "sell", "MSFT", "1000000")
    assert rc == EXIT_REFUSED and doc["ok"] is False
    [o] = doc["orders"]
    assert o["status"] == "Rejected" and o["reason"].startswith("max_order_value")

    rc, out = sh("halt", "--reason", "lunch")[:2]
    assert rc == EXIT_OK and out.startswith("halt: trading HALTED (lunch); "), out
    rc, out, _ = sh("halt")
    assert (rc, out) == (EXIT_REFUSED, "REFUSED: halt: already halted\n")
    rc, out, _ = sh("order", "buy", "AAPL", "1")
    assert rc == EXIT_REFUSED and "halted: trading is HALTED (lunch)" in out
    assert sh_json(sh, "status")[1]["trading_state"] == "HALTED"
    assert sh("resume")[:2] == (EXIT_OK, "resume: trading ACTIVE\n")
    assert sh("order", "buy", "AAPL", "1")[0] == EXIT_OK


def test_cancel_one_order_and_every_order(engine: Engine, sh: Shell) -> None:
    last = engine.mark("MSFT")
    assert last is not None
    ids = []
    for _ in range(3):
        rc, doc = sh_json(sh, "order", "buy", "MSFT", "1", "--limit", str(round(last * 0.97, 2)))
        assert rc == EXIT_OK
        ids.append(doc["orders"][0]["id"])
    rc, doc = sh_json(sh, "cancel", ids[0])
    assert rc == EXIT_OK and doc["orders"][0]["id"] == ids[0]
    assert doc["orders"][0]["status"] in ("PendingCancel", "Cancelled")
    wait_until(lambda: not engine.call(lambda: engine.oms.orders[ids[0]].is_live), "cancelled")
    rc, out, _ = sh("cancel", "--all")
    assert rc == EXIT_OK and out.startswith("cancel all: 2 orders cancelled")
    assert ids[1] in out and ids[2] in out
    wait_until(lambda: not engine.call(lambda: list(engine.oms.open)), "nothing working")
    rc, doc = sh_json(sh, "orders", "--all")
    assert [o["id"] for o in doc["orders"]] == ids
    assert {o["status"] for o in doc["orders"]} == {"Cancelled"}


def test_flatten_closes_every_position(engine: Engine, sh: Shell) -> None:
    assert sh("order", "buy", "AAPL", "7")[0] == EXIT_OK
    assert sh("order", "sell", "MSFT", "3")[0] == EXIT_OK
    book = engine.oms
    wait_until(
        lambda: engine.call(lambda: (book.position("AAPL"), book.position("MSFT"))) == (7, -3),
        "both filled",
    )
    rc, doc = sh_json(sh, "flatten")
    assert rc == EXIT_OK and doc["message"].startswith("flatten all: 2 closing orders sent")
    assert sorted((o["symbol"], o["side"], o["quantity"]) for o in doc["orders"]) == [
        ("AAPL", "SELL", 7.0),
        ("MSFT", "BUY", 3.0),
    ]
    wait_until(
        lambda: engine.call(lambda: (book.position("AAPL"), book.position("MSFT"))) == (0, 0),
        "flat",
    )
    assert sh("positions")[1] == "no open positions\n"


def test_impossible_quantities_never_reach_the_venue(engine: Engine, sh: Shell) -> None:
    from fbterm.control import ControlError, send_request

    rc, _, err = sh("order", "buy", "AAPL", "0.5")
    assert rc == EXIT_USAGE and "AAPL trades in whole shares; got a quantity of 0.5" in err
    rc, _, err = sh("order", "buy", "AAPL 20991218 C150", "1.5")
    assert rc == EXIT_USAGE and "whole option contracts" in err
    for bad in ("nan", "inf", "true", "0", "-3"):
        with pytest.raises(SystemExit):
            sh("order", "buy", "AAPL", bad)
    # A script speaking to the socket directly gets the same rules from the engine.
    sock = engine.config.control_socket_path
    order = {"command": "order", "side": "buy", "symbol": "AAPL"}
    with pytest.raises(ControlError, match="quantity must be a number, got True"):
        send_request(sock, "execute", timeout=10, **order, quantity=True)
    with pytest.raises(ControlError, match="limit must be a number"):
        send_request(sock, "execute", timeout=10, **order, quantity=1, limit="150")
    with pytest.raises(ControlError, match="side must be buy or sell"):
        send_request(sock, "execute", timeout=10, **{**order, "side": "hold"}, quantity=1)
    res = send_request(sock, "execute", timeout=10, **order, quantity=0.5)
    assert res["ok"] is False and "AAPL trades in whole shares" in res["message"]
    res = send_request(
        sock, "execute", timeout=10, **{**order, "symbol": "AAPL 2025011 C150"}, quantity=1
    )
    assert res["ok"] is False and "is not a symbol (AAPL), an option" in res["message"]
    assert engine.call(lambda: list(engine.oms.orders)) == []  # none of them became an order


# ------------------------------------------------------------------ no engine


def test_acting_needs_a_running_engine(cfg: Config, sh: Shell) -> None:
    for args in (
        ("halt",),
        ("resume",),
        ("flatten",),
        ("order", "buy", "AAPL", "1"),
        ("cancel", "FB-000001"),
        ("cancel", "--all"),
    ):
        rc, out, err = sh(*args)
        assert rc == EXIT_NO_ENGINE and out == "", args
        [line] = err.splitlines()
        assert f"no engine running (nothing listens on {cfg.control_socket_path})" in line


def test_reads_fall_back_to_the_journal(cfg: Config, engine: Engine, sh: Shell) -> None:
    assert sh("order", "buy", "AAPL", "4")[0] == EXIT_OK
    wait_until(lambda: engine.call(lambda: engine.oms.position("AAPL")) == 4, "filled")
    last = engine.mark("MSFT")
    assert last is not None
    rc, doc = sh_json(sh, "order", "buy", "MSFT", "2", "--limit", str(round(last * 0.97, 2)))
    working = doc["orders"][0]["id"]
    live = {k: sh_json(sh, k)[1] for k in ("orders", "positions")}
    engine.stop()

    note = f"no engine running; from the journal at {cfg.journal_path}\n"
    rc, out, _ = sh("status")
    assert rc == EXIT_OK and out.startswith(note)
    assert "orders 2 (1 working)  positions 1  fills 1" in out
    rc, out, _ = sh("orders")
    assert out.startswith(note) and working in out
    rc, doc = sh_json(sh, "orders")
    assert doc["source"] == "journal" and doc["journal"] == str(cfg.journal_path)
    assert [o["id"] for o in doc["orders"]] == [o["id"] for o in live["orders"]["orders"]]
    assert all(tuple(o) == ORDER_KEYS for o in doc["orders"])
    rc, doc = sh_json(sh, "positions")
    [pos] = doc["positions"]
    [was] = live["positions"]["positions"]
    assert tuple(pos) == POSITION_KEYS
    assert (pos["symbol"], pos["quantity"], pos["avg_cost"]) == (
        "AAPL",
        4.0,
        pytest.approx(was["avg_cost"]),
    )
    assert pos["last"] is None  # no market without an engine
    rc, doc = sh_json(sh, "status")
    assert (doc["source"], doc["running"], doc["pid"], doc["open_orders"], doc["fills"]) == (
        "journal",
        False,
        None,
        1,
        1,
    )


def test_status_keys_are_the_same_from_either_source(cfg: Config, sh: Shell) -> None:
    e = Engine(cfg)
    e.start(control=True)
    try:
        live = sh_json(sh, "status")[1]
    finally:
        e.stop()
    from_journal = sh_json(sh, "status")[1]
    assert list(live) == list(from_journal)


def test_no_engine_and_no_journal(cfg: Config, sh: Shell) -> None:
    rc, out, err = sh("orders")
    assert rc == EXIT_NO_ENGINE and out == ""
    assert err == f"fbterm: no engine running, and no journal at {cfg.journal_path}\n"
    assert not cfg.journal_path.exists()  # reading never creates a journal


# ------------------------------------------------------------------ a real headless process


def test_the_shell_drives_a_headless_fbterm(tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(
        f"""
[market]
symbols = ["AAPL", "MSFT"]
[market.simulated]
ticks_per_second = 20.0
[journal]
path = "{tmp_path / "j.sqlite"}"
[log]
path = "{tmp_path / "activity.jsonl"}"
[control]
socket = "{tmp_path / "run" / "c.sock"}"
"""
    )

    def fbterm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fbterm", *args, "--config", str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    run = subprocess.Popen(
        [sys.executable, "-m", "fbterm", "run", "--headless", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            # "engine: running", not the journal fallback's "no engine running".
            lambda: fbterm("status").stdout.startswith("engine: running"),
            "engine up",
        )
        sock = tmp_path / "run" / "c.sock"
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"
        r = fbterm("halt", "--reason", "from ssh")
        assert r.returncode == 0 and r.stdout.startswith("halt: trading HALTED (from ssh); ")
        r = fbterm("order", "buy", "AAPL", "3", "--json")
        assert r.returncode == EXIT_REFUSED
        assert json.loads(r.stdout)["orders"][0]["reason"].startswith("halted")
        assert fbterm("resume").returncode == 0
        r = fbterm("order", "buy", "AAPL", "3")
        assert r.returncode == 0 and r.stdout.startswith("new order FB-")
        wait_until(lambda: "AAPL" in fbterm("positions").stdout, "the position")
    finally:
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "Traceback" not in err
    r = fbterm("positions")
    assert r.stdout.startswith(f"no engine running; from the journal at {tmp_path / 'j.sqlite'}")
    assert fbterm("halt").returncode == EXIT_NO_ENGINE


# ------------------------------------------------------------------ order terms from the shell


def test_brackets_trailing_stops_and_terms_from_the_command_line(engine: Engine, sh: Shell) -> None:
    import datetime as dt

    from fbterm.model import OrderType, TimeInForce

    last = engine.mark("AAPL")
    assert last is not None
    below = round(last * 0.98, 2)  # works: inside the collar, below the market

    # A bracket: the entry and its two exits, which name it as their parent.
    tp, sl = round(last * 1.1, 2), round(last * 0.9, 2)
    args = ("order", "buy", "AAPL", "4", "--limit", str(below), "--tp", str(tp), "--sl", str(sl))
    rc, doc = sh_json(sh, *args)
    assert rc == EXIT_OK, doc
    entry, take, stop = doc["orders"]
    assert all(tuple(o) == ORDER_KEYS for o in doc["orders"])
    assert (take["reason"], take["limit"], take["side"], take["parent"]) == (
        "take-profit",
        tp,
        "SELL",
        entry["id"],
    )
    assert (stop["reason"], stop["stop"], stop["parent"]) == ("stop-loss", sl, entry["id"])
    assert entry["parent"] is None and f"with take-profit {take['id']}" in doc["message"]

    # A trailing stop by percent: a TRAIL order whose distance the engine holds.
    rc, doc = sh_json(sh, "order", "sell", "AAPL", "2", "--trail", "2%")
    assert rc == EXIT_OK, doc
    [trail] = doc["orders"]
    assert (trail["type"], trail["terms"]) == ("TRAIL", "trail=2%")
    ours = engine.call(lambda: engine.oms.orders[trail["id"]])
    assert ours.order_type is OrderType.TRAIL and ours.options.trail_percent == 2.0

    # GTD, outside regular hours and the Adaptive algo, as flags and as one --terms text.
    rc, doc = sh_json(
        sh,
        *("order", "buy", "AAPL", "1", "--limit", str(below)),
        *("--gtd", "2099-01-02T16:00-05:00", "--outside-rth"),
    )
    assert rc == EXIT_OK, doc
    [gtd] = doc["orders"]
    assert gtd["tif"] == "GTD"
    assert gtd["terms"] == "gtd=2099-01-02T21:00:00+00:00 outside-rth"
    ours = engine.call(lambda: engine.oms.orders[gtd["id"]])
    assert ours.tif is TimeInForce.GTD and ours.options.outside_rth
    assert ours.options.good_till == dt.datetime(2099, 1, 2, 21, tzinfo=dt.UTC).timestamp()
    rc, doc = sh_json(
        sh, "order", "buy", "AAPL", "1", "--limit", str(below), "--terms", "algo=adaptive:patient"
    )
    assert rc == EXIT_OK, doc
    [algo] = doc["orders"]
    ours = engine.call(lambda: engine.oms.orders[algo["id"]])
    assert (ours.options.algo, ours.options.algo_priority) == ("Adaptive", "Patient")

    # IOC: what the next price does not fill is cancelled, and the shell can see it was.
    rc, doc = sh_json(sh, "order", "buy", "AAPL", "1", "--limit", str(below), "--tif", "IOC")
    assert rc == EXIT_OK and doc["orders"][0]["tif"] == "IOC"
    ioc = doc["orders"][0]["id"]
    wait_until(lambda: not engine.call(lambda: engine.oms.orders[ioc].is_live), "IOC ended")
    assert engine.call(lambda: engine.oms.orders[ioc].reason).startswith("IOC")

    # The text table shows the terms and which entry an exit belongs to.
    rc, out, _ = sh("orders")
    assert "TERMS" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows[take["id"]].endswith(f"parent={entry['id']}")
    assert rows[trail["id"]].endswith("trail=2%")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--tp", "abc"), "order: terms: tp: not a number: 'abc'"),
        (("--trail", "0"), "trail: must be > 0"),
        (("--trail", "1", "--limit", "190"), "TRAIL takes no limit price"),
        (("--algo", "vwap"), "algo must be adaptive, got 'vwap'"),
        (("--gtd", "tomorrow"), "gtd: not a date and time: 'tomorrow'"),
        (("--tif", "GTD"), "GTD needs a good-till time"),
        (("--tif", "GTC", "--gtd", "2099-01-02T16:00"), "--tif GTC contradicts the terms"),
        (("--terms", "tp=1 bogus=2"), "unknown term 'bogus=2'"),
        (("--tp", "1 2"), "--tp needs one value"),
    ],
)
def test_bad_terms_are_refused_before_anything_is_sent(
    engine: Engine, sh: Shell, args: tuple[str, ...], words: str
) -> None:
    rc, out, err = sh("order", "buy", "AAPL", "1", *args)
    assert (rc, out) == (EXIT_USAGE, "") and words in err and err.count("\n") == 1
    assert engine.call(lambda: list(engine.oms.orders)) == []


def test_a_script_sends_terms_over_the_socket(engine: Engine) -> None:
    from fbterm.control import ControlError, send_request

    sock = engine.config.control_socket_path
    last = engine.mark("MSFT")
    assert last is not None
    order = {"command": "order", "side": "buy", "symbol": "MSFT", "quantity": 2}
    res = send_request(sock, "execute", timeout=10, **order, terms="trail=1.5 outside-rth")
    assert res["ok"] is True, res
    [o] = res["orders"]
    assert (o["type"], o["terms"]) == ("TRAIL", "trail=1.5 outside-rth")
    with pytest.raises(ControlError, match="terms: unknown term 'x=1'"):
        send_request(sock, "execute", timeout=10, **order, terms="x=1")
    with pytest.raises(ControlError, match="terms must be text"):
        send_request(sock, "execute", timeout=10, **order, terms=5)
    with pytest.raises(ControlError, match="tif must be one of DAY, GTC, IOC, GTD"):
        send_request(sock, "execute", timeout=10, **order, tif="FOK")
    with pytest.raises(ControlError, match="tif DAY contradicts the terms"):
        send_request(sock, "execute", timeout=10, **order, tif="DAY", terms="tif=IOC")
    # A bracket whose exits are on the wrong side of the entry is the engine's refusal.
    res = send_request(
        sock, "execute", timeout=10, **order, limit=round(last * 0.99, 2), terms="tp=1 sl=2"
    )
    assert res["ok"] is False and "take-profit" in res["message"], res
    assert len(engine.call(lambda: list(engine.oms.orders))) == 1
