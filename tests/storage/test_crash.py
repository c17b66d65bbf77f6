"""Crash safety, for real: ``ketamon record`` streams from an emulated Masimo oximeter over a pty
and is killed with SIGKILL at random points, again and again. After every kill, each reading the
child reported committed (``--commit-log``) is in the database; the database passes its
integrity checks; and the next start finds the open session and resumes it."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from devices.emulators.base import PtyServer
from devices.emulators.masimo import MasimoEmulator
from devices.scenarios import get_scenario
from ketamon.services import list_open_sessions, open_database
from ketamon.storage.database import make_engine
from ketamon.storage.models import AuditAction, AuditEntry, VitalReading

ROOT = Path(__file__).resolve().parents[2]
CHAIR = "Chair 7"
COMMITTED = re.compile(r"^record: committed (\d+) readings \(total (\d+), last at (\S+)\)$")
SESSION = re.compile(r"^record: (started|resuming) session (\d+) for ")
KILLS = 4


@dataclass
class Child:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def pump(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

    def start(self) -> Child:
        self._thread = threading.Thread(target=self.pump, daemon=True)
        self._thread.start()
        return self

    def drain(self) -> None:
        """After the process has ended: wait until every line it wrote has been read."""
        if self._thread is not None:
            self._thread.join(10)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.snapshot():
                m = pattern.match(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return None

    def last_commit(self) -> tuple[int, datetime] | None:
        found = None
        for line in self.snapshot():
            m = COMMITTED.match(line)
            if m:
                found = (int(m.group(2)), datetime.fromisoformat(m.group(3)))
        return found


def start_child(link: Path, db_url: str, *extra: str) -> Child:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ketamon",
            "record",
            "--protocol",
            "masimo",
            "--port",
            str(link),
            "--db",
            db_url,
            "--chair",
            CHAIR,
            "--commit-log",
            "--quiet",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Child(proc).start()


def check_integrity(engine: Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalars().all() == ["ok"]
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        else:  # PostgreSQL recovers by its WAL; the tables must still read end to end
            for table in ("vital_reading", "treatment_session", "audit_entry"):
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def readings_in(engine: Engine, session_id: int) -> int:
    with Session(engine) as s:
        q = select(func.count()).where(VitalReading.session_id == session_id)
        return int(s.scalar(q) or 0)


def present(engine: Engine, session_id: int, host_time: datetime) -> bool:
    with Session(engine) as s:
        q = select(func.count()).where(
            VitalReading.session_id == session_id, VitalReading.host_time == host_time
        )
        return bool(s.scalar(q))


def open_session_ids(db_url: str) -> list[int]:
    """Open sessions of the chair, read without migrating (the child may have died first)."""
    engine = make_engine(db_url)
    try:
        return [o.id for o in list_open_sessions(engine, CHAIR)]
    except DBAPIError:  # no schema yet
        return []
    finally:
        engine.dispose()


def session_line(child: Child) -> re.Match[str] | None:
    return next((m for m in map(SESSION.match, child.snapshot()) if m), None)


@pytest.mark.pty
@pytest.mark.slow
def test_record_survives_sigkill_at_random_points(db_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("KETAMON_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    why = f"(KETAMON_CRASH_SEED={seed})"
    link = tmp_path / "monitor"
    server = PtyServer(MasimoEmulator(get_scenario("stable")), speed=20, link=link).start()
    reported = 0  # readings the children said were committed, summed over the runs
    try:
        for run in range(KILLS):
            before = open_session_ids(db_url)
            assert len(before) <= 1, why
            child = start_child(link, db_url)
            try:
                if run == 0 and rng.random() < 0.5:
                    # Sometimes kill during start-up: migration, session creation.
                    time.sleep(rng.uniform(0.05, 1.0))
                else:
                    assert child.wait_for(SESSION, 30), f"run {run}: no session {why}"
                    assert child.wait_for(COMMITTED, 20), f"run {run}: no commit {why}"
                    time.sleep(rng.uniform(0.0, 1.5))
                child.proc.send_signal(signal.SIGKILL)
                assert child.proc.wait(10) == -signal.SIGKILL
            finally:
                if child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait(10)
                child.drain()
            m = session_line(child)
            if m is not None:  # an open session is resumed, never replaced
                expected = ("resuming", before[0]) if before else ("started", int(m.group(2)))
                assert (m.group(1), int(m.group(2))) == expected, f"run {run} {why}"
            after = open_session_ids(db_url)
            if not after:
                assert m is None, f"run {run}: the session vanished {why}"
                continue
            (session_id,) = after
            assert before in ([], after), f"run {run}: a second session {why}"
            last = child.last_commit()
            engine = make_engine(db_url)
            try:
                check_integrity(engine)
                if last is not None:
                    reported += last[0]
                    assert present(engine, session_id, last[1]), f"run {run}: lost {last} {why}"
                in_db = readings_in(engine, session_id)
                assert in_db >= reported, f"run {run}: {in_db} < {reported} committed {why}"
            finally:
                engine.dispose()
        (session_id,) = open_session_ids(db_url)
        # A clean run at the end resumes the same session and closes it.
        child = start_child(link, db_url, "--seconds", "1.5")
        assert child.proc.wait(30) == 0, child.snapshot()[-5:]
        child.drain()
        m = session_line(child)
        assert m and (m.group(1), int(m.group(2))) == ("resuming", session_id), why
    finally:
        server.stop()
    engine = open_database(db_url)
    try:
        check_integrity(engine)
        assert readings_in(engine, session_id) > reported
        assert list_open_sessions(engine, CHAIR) == []
        with Session(engine) as s:
            resumes = s.scalar(
                select(func.count()).where(
                    AuditEntry.action == AuditAction.RESUME, AuditEntry.session_id == session_id
                )
            )
        assert resumes is not None and resumes >= KILLS - 1
    finally:
        engine.dispose()
