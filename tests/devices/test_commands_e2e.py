"""End to end per protocol: the emulator on a real pty talks to ``ketamon record`` through
pyserial, including pulling the cable mid-stream and restoring it; ``decode`` and ``emulate``
work as documented."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.loopback import run_loopback
from devices.scenarios import Link, get_scenario
from ketamon.storage.models import AlarmRecord, DeviceLinkEvent, VitalReading

ROOT = Path(__file__).resolve().parents[2]
SERIAL_PROTOCOLS = ["hl7", "intellivue", "datex", "masimo"]
#: scenario speed per protocol: fast enough for a cuff cycle or two within the test
SPEED = {"hl7": 20.0, "intellivue": 20.0, "datex": 20.0, "masimo": 20.0}


def _available(protocol: str) -> bool:
    try:
        emulator_class(protocol)
    except (ImportError, AttributeError):
        return False
    return True


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.pty
@pytest.mark.slow
@pytest.mark.parametrize("protocol", SERIAL_PROTOCOLS)
def test_record_streams_survives_pulled_cable_and_stores_readings(
    protocol: str, tmp_path: Path
) -> None:
    if not _available(protocol):
        pytest.fail(f"no emulator for {protocol}")
    link = tmp_path / "monitor"
    db = tmp_path / "rec.sqlite3"
    server = PtyServer(
        emulator_class(protocol)(get_scenario("stable")), speed=SPEED[protocol], link=link
    ).start()
    out_path, err_path = tmp_path / "out.jsonl", tmp_path / "err.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ketamon",
                "--data-dir",
                str(tmp_path / "data"),
                "record",
                "--protocol",
                protocol,
                "--port",
                str(link),
                "--db",
                f"sqlite:///{db}",
                "--raw",
                str(tmp_path / "raw.bin"),
            ],
            stdout=out,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
    try:

        def lines() -> list[dict]:  # type: ignore[type-arg]
            return [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]

        _wait(lambda: len(lines()) >= 3, 30, f"{protocol} readings")
        _wait(lambda: "streaming" in err_path.read_text(), 10, "streaming status")
        before = len(lines())
        server.force_link(Link.PULLED)
        _wait(lambda: "connecting: link lost" in err_path.read_text(), 15, "link lost status")
        time.sleep(0.5)
        server.force_link(None)
        _wait(lambda: err_path.read_text().count("streaming") >= 2, 30, "streaming again")
        _wait(lambda: len(lines()) > before + 2, 30, "readings after the cable came back")
    finally:
        child.send_signal(signal.SIGINT)
        try:
            rc = child.wait(20)
        finally:
            if child.poll() is None:
                child.kill()
            server.stop()
    err_text = err_path.read_text()
    assert rc == 0, err_text
    assert "Traceback" not in err_text
    printed = lines()
    assert {"parameter", "value", "unit", "mdc", "device_time", "flags", "session_id"} <= set(
        printed[0]
    )
    params = {d["parameter"] for d in printed}
    assert params & {"spo2", "hr", "pr"}
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        stored = s.scalar(select(func.count()).select_from(VitalReading))
        states = [e.state for e in s.scalars(select(DeviceLinkEvent).order_by(DeviceLinkEvent.id))]
    engine.dispose()
    assert stored == len(printed)
    assert states.count("streaming") >= 2 and "connecting" in states
    assert (tmp_path / "raw.bin").stat().st_size > 0


def _alarm_rows(db: Path) -> list[tuple[str, str, str, bool]]:
    """(key, action, priority, technical) of the stored alarm events, oldest first."""
    from sqlalchemy.exc import OperationalError

    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            rows = s.scalars(select(AlarmRecord).order_by(AlarmRecord.id)).all()
            return [(r.key, r.action, r.priority, r.technical) for r in rows]
    except OperationalError:  # not created yet, or locked by the writer for a moment
        return []
    finally:
        engine.dispose()


@pytest.mark.pty
@pytest.mark.slow
def test_record_evaluates_the_alarm_engine_and_stores_raised_and_cleared_flags(
    tmp_path: Path,
) -> None:
    """The desaturation scenario 39 min after the dose: SpO2 at its 84 % nadir, then back up.
    ``record`` runs the same pipeline as a chair, so the flag is stored as it is raised and as it
    clears; SIGTERM ends it cleanly with every printed reading committed."""
    link = tmp_path / "monitor"
    db = tmp_path / "rec.sqlite3"
    server = PtyServer(
        emulator_class("intellivue")(get_scenario("desaturation")),
        speed=30.0,
        start_at_s=2640.0,
        link=link,
    ).start()
    out_path, err_path = tmp_path / "out.jsonl", tmp_path / "err.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ketamon",
                "--data-dir",
                str(tmp_path / "data"),
                "record",
                "--protocol",
                "intellivue",
                "--port",
                str(link),
                "--db",
                f"sqlite:///{db}",
            ],
            stdout=out,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
    try:

        def spo2_actions() -> list[str]:
            return [a for k, a, _, _ in _alarm_rows(db) if k.startswith("spo2")]

        t0 = time.monotonic()
        _wait(lambda: "raised" in spo2_actions(), 30, "the SpO2 flag stored")
        raised_after_s = time.monotonic() - t0
        _wait(lambda: "cleared" in spo2_actions(), 40, "the SpO2 flag cleared")
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            rc = child.wait(20)
        finally:
            if child.poll() is None:
                child.kill()
            server.stop()
    err_text = err_path.read_text()
    assert rc == 0, err_text
    assert "Traceback" not in err_text
    rows = _alarm_rows(db)
    spo2 = [(a, p, t) for k, a, p, t in rows if k.startswith("spo2")]
    assert spo2[0] == ("raised", "medium", False), rows
    assert ("cleared", "medium", False) in spo2
    assert raised_after_s < 30
    printed = [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]
    assert min(d["value"] for d in printed if d["parameter"] == "spo2") < 90
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        stored = s.scalar(select(func.count()).select_from(VitalReading))
    engine.dispose()
    assert stored == len(printed)  # held readings flushed on SIGTERM


@pytest.mark.parametrize("protocol", SERIAL_PROTOCOLS)
def test_decode_prints_json_lines_and_counts_bad_frames(protocol: str, tmp_path: Path) -> None:
    if not _available(protocol):
        pytest.fail(f"no emulator for {protocol}")
    capture = run_loopback(protocol, get_scenario("stable"), 400.0).device_to_host
    f = tmp_path / "cap.bin"
    f.write_bytes(b"\x00garbage\xff" + capture)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "ketamon", "decode", "--protocol", protocol, str(f)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert rows
    for row in rows:
        assert {"parameter", "value", "unit", "mdc", "device_time", "flags"} <= set(row)
    nibp = [r for r in rows if r["parameter"] == "nibp_sys"]
    if protocol != "masimo":
        assert len(nibp) == get_scenario("stable").cuff_index_at(399.0) + 1
    assert "bad frames" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.pty
def test_emulate_prints_a_pty_path_that_serves_the_protocol(tmp_path: Path) -> None:
    import serial

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ketamon",
            "emulate",
            "--protocol",
            "masimo",
            "--scenario",
            "stable",
            "--speed",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        path = child.stdout.readline().strip()
        assert path.startswith("/dev/pts/"), path
        with serial.Serial(path, 9600, timeout=3) as port:
            line = port.readline()
        assert b"SPO2=" in line
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)  # also closes the pipes
    assert child.returncode == 0, err
    assert "emulate: sent" in err
