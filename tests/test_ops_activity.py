"""The activity log: JSON lines, rotation, the in-memory tail, and `fbterm log` reading it."""

from __future__ import annotations

import json
import threading

import pytest

from fbterm.cli import main
from fbterm.ops.activity import (
    ActivityLog,
    activity_log_files,
    follow_activity_log,
    read_activity_log,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("tmp_cwd")]  # no ./config.toml


def test_json_lines_shape_and_memory_tail(tmp_path):
    log = ActivityLog(tmp_path / "a.jsonl", memory=3)
    for i in range(5):
        log.log("order", f"order {i} submitted", order_id=f"o{i}", qty=i)
    log.log("alert", "halt", level="error", api_token="abc", password="p")
    log.close()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 6
    first = json.loads(lines[0])
    assert set(first) == {"ts", "level", "kind", "message", "fields"}
    assert (first["level"], first["kind"], first["message"], first["fields"]) == (
        "info",
        "order",
        "order 0 submitted",
        {"order_id": "o0", "qty": 0},
    )
    assert json.loads(lines[-1])["fields"] == {"api_token": "***", "password": "***"}
    assert [e.message for e in log.recent()] == ["order 3 submitted", "order 4 submitted", "halt"]
    assert [e.message for e in log.recent(kind="alert")] == ["halt"]
    seq = log.recent()[0].seq
    assert [e.message for e in log.since(seq)] == ["order 4 submitted", "halt"]


def test_level_floor_drops_debug(tmp_path):
    log = ActivityLog(tmp_path / "a.jsonl", level="warning")
    assert log.log("tick", "noise") is None
    kept = log.log("risk", "near limit", level="warning")
    assert kept is not None and (kept.kind, kept.message, kept.level) == (
        "risk",
        "near limit",
        "warning",
    )
    log.close()
    assert [e.kind for e in read_activity_log(tmp_path / "a.jsonl")] == ["risk"]


def test_rotation_keeps_backups_and_reads_in_order(tmp_path):
    path = tmp_path / "a.jsonl"
    log = ActivityLog(path, max_bytes=2_000, backups=2)
    for i in range(200):
        log.log("order", f"event {i:03d}", n=i)
    log.close()
    files = activity_log_files(path)
    assert [f.name for f in files] == ["a.jsonl.2", "a.jsonl.1", "a.jsonl"]
    assert all(f.stat().st_size <= 2_000 for f in files)
    entries = read_activity_log(path)
    ns = [e.fields["n"] for e in entries]
    assert ns == list(range(ns[0], 200))  # oldest rotated away, the rest contiguous and in order
    assert ns[0] > 0
    assert [e.fields["n"] for e in read_activity_log(path, tail=5)] == [195, 196, 197, 198, 199]


def test_zero_backups_truncates_instead_of_growing(tmp_path):
    path = tmp_path / "a.jsonl"
    log = ActivityLog(path, max_bytes=1_500, backups=0)
    for i in range(100):
        log.log("x", f"event {i}")
    log.close()
    assert path.stat().st_size <= 1_500
    assert activity_log_files(path) == [path]
    assert read_activity_log(path)[-1].message == "event 99"


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "a.jsonl"
    log = ActivityLog(path, memory=10_000)

    def writer(k):
        for i in range(200):
            log.log("thread", f"w{k}-{i}", k=k, i=i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 800
    parsed = [json.loads(x) for x in lines]
    for k in range(4):
        assert [p["fields"]["i"] for p in parsed if p["fields"]["k"] == k] == list(range(200))
    assert len(log.recent()) == 800


def test_follow_sees_appends_across_rotation(tmp_path):
    path = tmp_path / "a.jsonl"
    log = ActivityLog(path, max_bytes=3_000, backups=5)
    log.log("old", "before follow")
    stop = threading.Event()
    seen: list[str] = []
    cond = threading.Condition()

    def reader():
        for e in follow_activity_log(path, poll=0.01, stop=stop):
            with cond:
                seen.append(e.message)
                cond.notify_all()

    def wait_for(pred):
        with cond:
            assert cond.wait_for(pred, timeout=20)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    # The follower starts at the end of the file; ping until it has opened it.
    for i in range(2000):
        log.log("sync", f"sync {i}")
        with cond:
            if cond.wait_for(lambda: bool(seen), timeout=0.01):
                break
    wait_for(lambda: bool(seen))
    with cond:
        seen.clear()
    # Batches far smaller than a file, each read before the next, so a rotation can never
    # happen twice between two reads (which tail -F cannot survive either).
    for batch in range(12):
        for i in range(batch * 5, batch * 5 + 5):
            log.log("new", f"event {i:03d}")
        wait_for(lambda b=batch: sum(m.startswith("event") for m in seen) == b * 5 + 5)
    stop.set()
    t.join(5)
    log.close()
    assert len(activity_log_files(path)) > 2  # it did rotate, more than once
    assert "before follow" not in seen
    assert [m for m in seen if not m.startswith("sync")] == [f"event {i:03d}" for i in range(60)]


# ------------------------------------------------------------------ fbterm log


def _write_sample(path):
    log = ActivityLog(path)
    log.log("command", "halt requested", source="ui")
    log.log("order", "o-1 submitted", order_id="o-1")
    log.log("alert", "CRITICAL: halted", level="error")
    log.log("order", "o-1 filled", order_id="o-1", price=101.5)
    log.close()


def test_fbterm_log_reads_and_filters(tmp_path, capsys):
    path = tmp_path / "activity.jsonl"
    _write_sample(path)
    assert main(["log", "--file", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert (
        "INFO" in out[0]
        and "command" in out[0]
        and "halt requested" in out[0]
        and "source=ui" in out[0]
    )

    assert main(["log", "--file", str(path), "--kind", "order", "--tail", "1"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "o-1 filled" in line and "price=101.5" in line

    assert main(["log", "--file", str(path), "--level", "error", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["message"] == "CRITICAL: halted"


def test_fbterm_log_finds_the_configured_log(tmp_path, capsys):
    path = tmp_path / "logs" / "ops.jsonl"
    _write_sample(path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[log]\npath = "{path}"\n')
    assert main(["--config", str(cfg), "log", "--kind", "alert"]) == 0
    assert "CRITICAL: halted" in capsys.readouterr().out
    assert main(["log", "--config", str(cfg), "-n", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_fbterm_log_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["log", "--file", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fbterm: no activity log at") and err.count("\n") == 1


def test_ops_cli_is_import_light():
    import subprocess
    import sys

    code = (
        "import argparse, sys, fbterm.cli.ops as m; m.register(argparse.ArgumentParser().add_subparsers()); "
        "heavy = [m for m in ('fbterm.ops', 'fbterm.metrics', 'fbterm.control', 'numpy', 'pandas', 'smtplib') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"
