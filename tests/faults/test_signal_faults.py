"""Fault suite (issue 11): signals and storage faults, on real processes and a real pty."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.scenarios import get_scenario
from ketamon.storage.models import TreatmentSession, VitalReading

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _count(db: Path) -> tuple[int, int]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            readings = s.scalar(select(func.count()).select_from(VitalReading)) or 0
            open_ = s.scalar(
                select(func.count())
                .select_from(TreatmentSession)
                .where(TreatmentSession.ended_at.is_(None))
            )
            return int(readings), int(open_ or 0)
    finally:
        engine.dispose()


@pytest.mark.pty
def test_sigterm_during_a_database_lock_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM while another program holds the database locked: the held readings go to the
    spool within 5 s, the session stays open, and the next start stores them all."""
    link = tmp_path / "monitor"
    db = tmp_path / "rec.sqlite3"
    server = PtyServer(
        emulator_class("masimo")(get_scenario("stable")), speed=10.0, link=link
    ).start()
    out_path, err_path = tmp_path / "out.jsonl", tmp_path / "err.txt"
    argv = [sys.executable, "-m", "ketamon", "--data-dir", str(tmp_path / "data"), "record"]
    argv += ["--protocol", "masimo", "--port", str(link), "--db", f"sqlite:///{db}"]
    try:
        with open(out_path, "w") as out, open(err_path, "w") as err:
            child = subprocess.Popen(argv, stdout=out, stderr=err, env=ENV, cwd=ROOT)

        def printed() -> list[dict]:  # type: ignore[type-arg]
            return [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]

        _wait(lambda: len(printed()) >= 5, 30, "readings")
        holder = sqlite3.connect(db, timeout=10)
        holder.execute("BEGIN IMMEDIATE")  # no writer gets in
        try:
            n_locked = len(printed())
            _wait(lambda: len(printed()) >= n_locked + 10, 30, "readings while locked")
            t0 = time.monotonic()
            child.send_signal(signal.SIGTERM)
            rc = child.wait(20)
            stop_s = time.monotonic() - t0
        finally:
            holder.rollback()
            holder.close()
    finally:
        if child.poll() is None:
            child.kill()
        server.stop()
    err_text = err_path.read_text()
    assert rc == 0, err_text
    assert stop_s < 5.0, (stop_s, err_text)
    assert "Traceback" not in err_text
    assert "stays open" in err_text and "kept in" in err_text, err_text
    spool = db.with_name(db.name + ".spool")
    assert spool.exists() and spool.stat().st_size > 0
    total = len(printed())
    stored, _ = _count(db)
    assert stored < total  # the lock held some back ...
    # ... and the next start stores them, exactly once
    again = subprocess.run(
        [
            *argv[:-4],
            "--protocol",
            "masimo",
            "--port",
            "/dev/nonexistent",
            "--db",
            f"sqlite:///{db}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=60,
    )
    assert again.returncode == 2  # refused (no such port) before replaying: nothing touched
    from ketamon.services import open_database
    from ketamon.storage.spool import Spool, replay_spool

    engine = open_database(f"sqlite:///{db}")
    try:
        result = replay_spool(Spool(spool), engine)
    finally:
        engine.dispose()
    assert result.readings == total - stored
    stored_after, open_sessions = _count(db)
    assert stored_after == total
    assert open_sessions == 1  # left open to be resumed
    assert not spool.exists()  # retired
    engine = open_database(f"sqlite:///{db}")
    try:  # replaying a retired spool again changes nothing
        assert replay_spool(Spool(spool), engine).readings == 0
    finally:
        engine.dispose()
    assert _count(db)[0] == total


def test_ctrl_c_stops_the_demo_cleanly_and_a_second_one_is_not_needed(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ketamon", "--data-dir", str(data), "demo", "--speed", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    try:
        db = data / "ketamon.sqlite3"
        _wait(lambda: db.exists() and db.stat().st_size > 0, 60, "the demo database")
        time.sleep(4.0)  # the window is up and the chairs stream
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert stop_s < 5.0


def test_ctrl_c_at_start_up_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ketamon", "--data-dir", str(tmp_path), "sessions", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    time.sleep(0.3)  # still importing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130)  # 0 only if it finished before the signal
    if proc.returncode == 130:
        assert "interrupted" in err
