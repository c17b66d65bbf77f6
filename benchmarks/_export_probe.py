"""Exports of an 8-hour session (5 numerics at 1 Hz, NIBP every 5 min, MOAA/S every 15 min,
flags), ended and signed: each format's time (reading the record and the readings from SQLite
included) and size; and queuing the session's readings for HL7 out."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(hours: float) -> None:
    from PySide6.QtGui import QGuiApplication

    from benchmarks._restore_probe import build_record
    from ketamon.core.ports import EntryDraft
    from ketamon.domain.record import EntryKind, fold
    from ketamon.domain.roles import Actor, Role
    from ketamon.exports import export_session
    from ketamon.hl7out import ENTRIES_CURSOR, READINGS_CURSOR, Hl7OutSender, parse_settings
    from ketamon.paths import resolve_paths
    from ketamon.services import open_database
    from ketamon.storage import outbox
    from ketamon.storage.history import session_readings
    from ketamon.storage.repository import SqlSessionRepository
    from ketamon.storage.users import authenticate

    tmp = Path(tempfile.mkdtemp())
    paths = resolve_paths(tmp / "data").ensure()
    url = paths.sqlite_url()
    sid, stored = build_record(url, hours, five_numerics=True)
    engine = open_database(url)
    repo = SqlSessionRepository(engine)
    u = authenticate(engine, "doctor", "demo")
    doc = Actor(u.id, u.username, u.full_name, Role.PHYSICIAN)
    now = datetime.now(UTC)
    repo.append(sid, [EntryDraft(EntryKind.ENDED, now, {"reason": "benchmark"})], doc)
    state = fold(repo.load(sid))
    assert state is not None
    sig = {
        "name": doc.full_name,
        "credentials": "MD",
        "meaning_id": "reviewed",
        "meaning": "Reviewed and approved",
        "content_sha256": "ab" * 32,
        "covers_entry_id": state.last_entry_id,
    }
    repo.append(sid, [EntryDraft(EntryKind.SIGNED, now, sig)], doc)
    QGuiApplication([])
    print(f"export_{hours:g}h_readings: {stored} readings", flush=True)
    for fmt, name in (("json", "s.json"), ("csv", "s.zip"), ("pdf", "s.pdf"), ("fhir", "f.json")):
        start = time.perf_counter()
        entries = repo.load(sid)
        readings = session_readings(engine, sid)
        result = export_session(entries, readings, fmt, tmp / name)
        took = time.perf_counter() - start
        print(f"export_{hours:g}h_{fmt}_time: {took:.2f} s", flush=True)
        print(f"export_{hours:g}h_{fmt}_size: {result.bytes / 1e6:.1f} MB", flush=True)
    start = time.perf_counter()
    export_session(entries, readings, "fhir", tmp / "g.json", validate=False)
    print(f"export_{hours:g}h_fhir_unvalidated_time: {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    export_session(entries, readings, "fhir", tmp / "h.json", downsample_s=60)
    print(f"export_{hours:g}h_fhir_downsampled_60s_time: {time.perf_counter() - start:.2f} s")
    outbox.enqueue(engine, [], cursor={READINGS_CURSOR: 0, ENTRIES_CURSOR: 0})
    sender = Hl7OutSender(
        engine, parse_settings({"host": "127.0.0.1", "port": 9, "sending_facility": "BENCH"})
    )
    start = time.perf_counter()
    queued = sender.scan()
    took = time.perf_counter() - start
    print(f"hl7_out_queue_{hours:g}h_time: {took:.2f} s ({queued} messages)", flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 8.0)
