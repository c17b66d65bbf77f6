"""Fault suite (issue 11 §5): concurrent first starts are idempotent.

Eight ``ketamon record`` processes started at once on a database file that does not exist yet,
each reading its own emulated monitor on a real pseudo-terminal: they race to create the file,
to migrate it, to make the built-in accounts and the "Unidentified" patient. Every one must
start, record and stop cleanly (it once ended in ``IntegrityError … patient.mrn``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.scenarios import get_scenario
from ketamon.storage.models import Patient, TreatmentSession, VitalReading

ROOT = Path(__file__).resolve().parents[2]
RECORDERS = 8


@pytest.mark.pty
@pytest.mark.slow
def test_eight_recorders_started_at_once_on_a_fresh_database_all_succeed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh.sqlite3"
    assert not db.exists()
    servers = [
        PtyServer(
            emulator_class("masimo")(get_scenario("stable")),
            speed=5.0,
            link=tmp_path / f"monitor{i}",
        ).start()
        for i in range(RECORDERS)
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KETAMON_DATABASE_URL", None)
    children: list[subprocess.Popen[str]] = []
    try:
        for i in range(RECORDERS):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "ketamon",
                        "--data-dir",
                        str(tmp_path / "data"),
                        "record",
                        "--protocol",
                        "masimo",
                        "--port",
                        str(tmp_path / f"monitor{i}"),
                        "--chair",
                        f"Chair {i + 1}",
                        "--db",
                        f"sqlite:///{db}",
                        "--seconds",
                        "6",
                        "--quiet",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=ROOT,
                )
            )
        results = []
        deadline = time.monotonic() + 180
        for child in children:
            _out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((child.returncode, err))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        for s in servers:
            s.stop()
    for i, (rc, err) in enumerate(results):
        assert rc == 0, f"recorder {i + 1} exited {rc}:\n{err}"
        for bad in ("IntegrityError", "Traceback", "internal error", "ketamon: error"):
            assert bad not in err, f"recorder {i + 1}: {bad}:\n{err}"
        assert "started session" in err, err
    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            sessions = s.scalars(select(TreatmentSession)).all()
            assert sorted(x.chair for x in sessions) == sorted(
                f"Chair {i + 1}" for i in range(RECORDERS)
            )
            # one shared "Unidentified" patient, made once
            assert s.scalar(select(func.count()).select_from(Patient)) == 1
            for x in sessions:
                n = s.scalar(
                    select(func.count())
                    .select_from(VitalReading)
                    .where(VitalReading.session_id == x.id)
                )
                assert n, f"{x.chair}: no readings stored"
    finally:
        engine.dispose()
