"""The app's flag and link events take the durable path (issue 11): while the database cannot
take them they are retried, and at the stop they go to the spool and are stored at the next
start. The database fault is injected at the repository (the writer's own faults are tested
for real in tests/faults)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import OperationalError

from devices.supervisor import LinkState, StatusEvent
from ketamon.domain.record import EntryKind, PatientInfo, Plan
from ketamon.domain.session_rules import Treatment
from ketamon.storage.spool import SpooledEntry, replay_spool

from .conftest import Rig


def test_a_link_event_the_database_cannot_take_is_spooled_then_stored(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = rig.presenter(0)
    patient = PatientInfo(None, "DUR-1", "Dora", "Durable", weight_kg=70, rems_enrolled=True)
    assert m.start_session(patient, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True).wait().ok
    rig.settle()
    sid = m.state.session_id  # type: ignore[union-attr]
    station = rig.station
    repo = station.repository
    assert repo is not None and station.writer is not None
    spool = station.writer.spool
    assert spool is not None

    def away(*_a: object, **_k: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(repo, "append", away)
    station._stop_deadline = time.monotonic()  # the stop has begun: spool rather than wait
    when = rig.clock.now()
    event = StatusEvent(m.name, LinkState.CONNECTING, LinkState.STREAMING, "cable pulled", when)
    station.chairs[0].sig_link_changed.emit(event)
    rig.settle()
    kept = [r for r in spool.records() if isinstance(r, SpooledEntry)]
    assert [(r.session_id, r.kind, r.data["reason"]) for r in kept] == [
        (sid, "link", "cable pulled")
    ]
    monkeypatch.undo()  # the database is back: the next start replays the spool
    result = replay_spool(spool, station.writer.engine)
    assert result.entries == 1
    links = [e for e in repo.load(sid) if e.kind is EntryKind.LINK]
    assert [e.data["reason"] for e in links][-1:] == ["cable pulled"]
