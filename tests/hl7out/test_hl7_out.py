"""HL7 v2 out against a real MLLP listener in another process: the messages, the ACK, the
durable queue through an engine outage (killed mid-stream, restarted: every message accepted
exactly once), and every way an engine can fail a message (AE, AR, silence, a hang-up
mid-message, nobody listening) keeping it queued with the reason."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest
from sqlalchemy import Engine

from devices.readings import Reading, make_reading
from ketamon.cli import main
from ketamon.hl7out import (
    ENTRIES_CURSOR,
    READINGS_CURSOR,
    Hl7OutSender,
    Hl7OutSettings,
    Hl7OutWorker,
    parse_settings,
)
from ketamon.services import open_database
from ketamon.storage import outbox
from ketamon.storage.history import session_readings
from ketamon.storage.users import system_user_id
from ketamon.storage.writer import DatabaseWriter
from tests.exports.recorded import MONITOR, Recorded, record_session
from tests.storage.conftest import fresh_database

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Listener:
    """The engine: ``python -m tests.hl7out.mllp_listener`` on a fixed port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self, mode: str = "aa", delay: float = 0.0) -> Listener:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hl7out.mllp_listener",
                str(self.port),
                str(self.log),
                mode,
                str(delay),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def lines(self, which: str) -> list[str]:
        path = self.log.with_suffix(f".{which}")
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(free_port(), tmp_path / "engine.log")
    try:
        yield lst
    finally:
        lst.kill()


def settings(port: int, **kw: Any) -> Hl7OutSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sending_facility": "BAY^CLINIC",
        "ack_timeout_s": 2.0,
        "retry_first_s": 0.05,
        "retry_max_s": 0.2,
        "batch_max": 20,
        "poll_s": 0.05,
    }
    return parse_settings({**base, **kw}, "test")


def from_the_start(engine: Engine) -> None:
    """Scan the whole database (the first scan otherwise starts at what is there)."""
    outbox.enqueue(engine, [], cursor={READINGS_CURSOR: 0, ENTRIES_CURSOR: 0})


@pytest.fixture
def rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    return record_session(f"sqlite:///{tmp_path / 'k.sqlite3'}", monkeypatch)


# ---- the messages ----------------------------------------------------------------------------


def test_messages_are_pcd01_oru_with_codes_units_and_the_signature(
    rec: Recorded, listener: Listener
) -> None:
    engine = open_database(rec.url)
    try:
        from_the_start(engine)
        sender = Hl7OutSender(engine, settings(listener.port))
        queued = sender.scan()
        rows = outbox.queue_rows(engine)
        assert queued == len(rows) > 2
        readings = session_readings(engine, rec.sid)
    finally:
        engine.dispose()
    kinds = [r.kind for r in rows]
    assert kinds.count("signed") == 1 and kinds.count("addendum") == 1
    batches = [r for r in rows if r.kind == "readings"]
    texts = {r.control_id: r for r in rows}
    engine = open_database(rec.url)
    try:
        msgs = {m.control_id: m.message for m in outbox.due(engine, datetime.now(UTC), 1000)}
    finally:
        engine.dispose()
    assert set(msgs) == set(texts)
    sent_values = []
    for b in batches:
        m = hl7.parse(msgs[b.control_id])
        msh = m.segment("MSH")
        assert str(msh[10]) == b.control_id and str(msh[9]) == "ORU^R01^ORU_R01"
        assert str(msh[12]) == "2.6" and str(msh[4]) == "BAY\\S\\CLINIC"
        assert str(msh[21]) == "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
        assert str(m.segment("PID")[3]).startswith("MRN-9^") and "Demo^Alex" in str(
            m.segment("PID")[5]
        )
        assert str(m.segment("OBR")[25]) == "R"
        for obx in m.segments("OBX"):
            code, unit, when = str(obx[3]), str(obx[6]), str(obx[14])
            assert code.endswith("^MDC") and unit.endswith("^UCUM") and when.endswith("+0000")
            assert str(obx[11]) == "R"
            sent_values.append((code.split("^")[0], float(str(obx[5])), when))
    # every stored reading went out once, with its MDC code, value and time
    stored = sorted(
        (str(_mdc(r)), r.value, r.host_time.strftime("%Y%m%d%H%M%S") + "+0000") for r in readings
    )
    assert sorted(sent_values) == stored
    signed = hl7.parse(msgs[next(r.control_id for r in rows if r.kind == "signed")])
    assert str(signed.segment("OBR")[25]) == "F"
    obx = [str(o) for o in signed.segments("OBX")]
    assert any("LOT-A" in o for o in obx) and any("LOT-B" in o for o in obx)
    assert any("MOAAS" in o and "|3|" in o and "|C|" in o for o in obx)  # the corrected one
    assert any("Dr Paul Physician" in o and "SHA-256" in o for o in obx)
    assert any("MANUAL" in o and "|138|" in o for o in obx)
    addendum = hl7.parse(msgs[next(r.control_id for r in rows if r.kind == "addendum")])
    assert str(addendum.segment("OBR")[25]) == "C"
    assert "Called the patient next day" in str(addendum)


def _mdc(r: Reading) -> int:
    from devices.readings import PARAMETERS

    code = PARAMETERS[r.parameter].mdc_code
    assert code is not None
    return code


def test_scanning_again_and_queuing_a_session_again_change_nothing(
    rec: Recorded, listener: Listener
) -> None:
    engine = open_database(rec.url)
    try:
        from_the_start(engine)
        sender = Hl7OutSender(engine, settings(listener.port))
        first = sender.scan()
        assert first > 0 and sender.scan() == 0
        assert sender.queue_session(rec.sid) == [
            f"S{rec.sid}-" + _sig(engine, rec)[0],
            _sig(engine, rec)[1],
        ]
        assert len(outbox.queue_rows(engine)) == first
    finally:
        engine.dispose()


def _sig(engine: Engine, rec: Recorded) -> tuple[str, str]:
    rows = outbox.queue_rows(engine)
    s = next(r.control_id for r in rows if r.kind == "signed")
    a = next(r.control_id for r in rows if r.kind == "addendum")
    return s.split("-", 1)[1], a


def test_a_new_interface_does_not_resend_the_history(rec: Recorded, listener: Listener) -> None:
    engine = open_database(rec.url)
    try:
        sender = Hl7OutSender(engine, settings(listener.port))
        assert sender.scan() == 0  # the first scan starts at what is there now
        writer = DatabaseWriter(engine, user_id=system_user_id(engine)).start()
        try:
            now = datetime.now(UTC)
            writer.submit_readings(
                rec.sid,
                [_monitor(make_reading("hr", 71, now)), _monitor(make_reading("rr", 15, now))],
            )
            writer.wait_idle()
        finally:
            writer.stop()
        assert sender.scan() == 1
        (row,) = outbox.queue_rows(engine)
        assert row.kind == "readings"
    finally:
        engine.dispose()


def _monitor(r: Reading) -> Reading:
    return Reading(r.parameter, r.value, r.unit, r.host_time, r.mdc, None, r.quality, MONITOR)


# ---- store and forward -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_engine_outage_loses_nothing_and_every_message_is_accepted_once(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    with fresh_database(backend, tmp_path) as url:
        rec = record_session(url, monkeypatch)
        engine = open_database(url)
        worker: Hl7OutWorker | None = None
        writer = DatabaseWriter(engine, user_id=system_user_id(engine)).start()
        try:
            from_the_start(engine)
            listener.start("aa", delay=0.02)
            worker = Hl7OutWorker(engine, settings(listener.port)).start()
            _wait(lambda: len(listener.lines("accepted")) >= 5, "first messages")
            listener.kill()  # mid-stream: the worker is sending as fast as ACKs come
            during = len(listener.lines("accepted"))
            # the engine is down: more readings arrive and queue
            base = datetime.now(UTC)
            for i in range(60):
                r = make_reading("hr", 60 + i % 20, base.replace(microsecond=0))
                writer.submit_readings(rec.sid, [_monitor(r)])
                base = base.replace(second=(base.second + 1) % 60)
            writer.wait_idle()
            _wait(lambda: _last_error(engine) != "", "a failed attempt")
            assert "cannot connect" in _last_error(engine) or "closed" in _last_error(engine)
            assert len(listener.lines("accepted")) == during  # nothing got through meanwhile
            listener.start("aa")  # the engine is back
            _wait(lambda: _queued(engine) == 0 and worker is not None and _idle(worker), "drain")
        finally:
            if worker is not None:
                worker.stop()
            writer.stop()
        rows = outbox.queue_rows(engine, include_sent=True)
        engine.dispose()
    expected = [r.control_id for r in rows]
    assert all(r.state == "sent" and r.ack_code == "AA" for r in rows)
    accepted = listener.lines("accepted")
    assert sorted(accepted) == sorted(expected)  # every message, exactly once
    assert len(set(accepted)) == len(accepted)
    received = listener.lines("received")
    resent = len(received) - len(set(received))
    assert resent <= 1  # at most the one in flight when the engine died, with its own id
    assert any(r.kind == "signed" for r in rows) and sum(r.kind == "readings" for r in rows) > 10


def _wait(cond: Any, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _queued(engine: Engine) -> int:
    return outbox.queue_counts(engine)[outbox.QUEUED]


def _last_error(engine: Engine) -> str:
    rows = outbox.queue_rows(engine)
    return next((r.last_error for r in rows if r.last_error), "")


def _idle(worker: Hl7OutWorker) -> bool:
    return worker.last.waiting == 0


# ---- every way a message can fail ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("ae", "the engine answered AE: test engine refuses"),
        ("ar", "the engine answered AR: test engine refuses"),
        ("silent", "no ACK from 127.0.0.1"),
        ("close", "closed the connection before acknowledging"),
        (None, "cannot connect to 127.0.0.1"),
    ],
)
def test_a_failed_message_stays_queued_with_the_reason_then_goes(
    mode: str | None,
    words: str,
    rec: Recorded,
    listener: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = open_database(rec.url)
    try:
        from_the_start(engine)
        sender = Hl7OutSender(engine, settings(listener.port, ack_timeout_s=0.5))
        if mode is not None:
            listener.start(mode)
        report = sender.run_pass()
        assert report.sent == 0 and words in report.failed
        rows = outbox.queue_rows(engine)
        first = rows[0]
        assert first.state == "queued" and first.attempts == 1 and words in first.last_error
        assert all(r.attempts == 0 for r in rows[1:])  # the rest wait their turn
        assert first.next_attempt_at is not None and first.last_attempt_at is not None
        assert first.next_attempt_at > first.last_attempt_at  # after a back-off
        capsys.readouterr()
        config = Path(os.environ["KETAMON_CONFIG_DIR"]) / "config.toml"
        config.write_text(
            f'[hl7_out]\nhost = "127.0.0.1"\nport = {listener.port}\nsending_facility = "BAY"\n'
        )
        assert main(["hl7-out", "status", "--json", "--db", rec.url]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["configured"] and doc["queued"] == len(rows)
        assert words in doc["messages"][0]["last_error"]
        assert main(["hl7-out", "status", "--db", rec.url]) == 0
        assert words in capsys.readouterr().out
        # the engine is fixed: after the back-off the same message (same control id) goes
        listener.kill()
        listener.start("aa")
        time.sleep(0.2)
        sender.close()
        while sender.run_pass().waiting:
            time.sleep(0.05)
        assert first.control_id in listener.lines("accepted")
        sent = outbox.queue_rows(engine, include_sent=True)
        assert all(r.state == "sent" for r in sent) and sent[0].attempts == 2
    finally:
        sender.close()
        engine.dispose()


# ---- the command line ------------------------------------------------------------------------


def test_hl7_out_run_and_send_from_the_command_line(
    rec: Recorded, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(os.environ["KETAMON_CONFIG_DIR"]) / "config.toml"
    config.write_text(
        f'[hl7_out]\nhost = "127.0.0.1"\nport = {listener.port}\nsending_facility = "BAY"\n'
    )
    listener.start("aa")
    assert main(["hl7-out", "send", str(rec.sid), "--db", rec.url]) == 0
    assert f"queued S{rec.sid}-" in capsys.readouterr().err
    assert main(["hl7-out", "run", "--once", "--db", rec.url]) == 0
    assert "2 sent" in capsys.readouterr().err
    assert main(["hl7-out", "send", str(rec.sid), "--db", rec.url]) == 0  # again: no change
    assert main(["hl7-out", "run", "--once", "--db", rec.url]) == 0
    assert main(["hl7-out", "status", "--json", "--all", "--db", rec.url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["queued"] == 0 and doc["sent"] == 2
    assert sorted(listener.lines("accepted")) == sorted(m["control_id"] for m in doc["messages"])


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('host = "x"\nport = 0\nsending_facility = "B"', "'port' must be a whole number"),
        ('port = 5\nsending_facility = "B"', "'host' must be"),
        ('host = "x"\nport = 5', "'sending_facility' must"),
        ('host = "x"\nport = 5\nsending_facility = "B"\nspeed = 1', "unknown key(s) speed"),
    ],
)
def test_a_bad_hl7_out_table_is_one_error_naming_the_file_and_key(
    table: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(os.environ["KETAMON_CONFIG_DIR"]) / "config.toml"
    config.write_text(f"[hl7_out]\n{table}\n")
    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    assert main(["hl7-out", "run", "--once", "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ketamon: error: ") and str(config) in err and words in err


def test_not_configured_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    assert main(["hl7-out", "status", "--db", url]) == 0
    assert "not configured: 0 queued, 0 sent" in capsys.readouterr().out
    assert main(["hl7-out", "run", "--once", "--db", url]) == 2
    assert "no [hl7_out] table" in capsys.readouterr().err


@pytest.mark.pty
def test_record_sends_its_readings_when_hl7_out_is_configured(
    tmp_path: Path, listener: Listener
) -> None:
    """``ketamon record`` with [hl7_out]: the Masimo emulator on a real pty, the readings stored,
    queued and accepted by the engine while recording."""
    from devices.emulators import emulator_class
    from devices.emulators.base import PtyServer
    from devices.scenarios import get_scenario

    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        f'[hl7_out]\nhost = "127.0.0.1"\nport = {listener.port}\nsending_facility = "BAY"\n'
        "poll_s = 0.2\n"
    )
    listener.start("aa")
    link = tmp_path / "monitor"
    server = PtyServer(
        emulator_class("masimo")(get_scenario("stable")), speed=20.0, link=link
    ).start()
    url = f"sqlite:///{tmp_path / 'rec.sqlite3'}"
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "ketamon", "--data-dir", str(data), "record"),
                *("--protocol", "masimo", "--port", str(link), "--db", url),
                *("--seconds", "6", "--quiet"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            timeout=60,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    accepted = listener.lines("accepted")
    assert accepted and all(cid.startswith("R") for cid in accepted)
    engine = open_database(url)
    try:
        sent = {
            r.control_id for r in outbox.queue_rows(engine, include_sent=True) if r.state == "sent"
        }
    finally:
        engine.dispose()
    assert set(accepted) == sent
