"""ketamon benchmarks, run by hand: ``python benchmarks/run.py [NAME ...]``.

Prints one ``name: value unit`` line per figure. Names: startup, decode, ingest, station, chart,
restore, review, audit_verify, fuzz, export, clinic, soak, reconnect.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent


def emit(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.4g} {unit}", flush=True)


def _time_to_ready(args: list[str], runs: int = 3) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    best = float("inf")
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            env["KETAMON_DATA_DIR"] = d
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [sys.executable, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
            )
            assert p.stdout is not None
            line = p.stdout.readline()
            elapsed = time.perf_counter() - t0
            p.wait(30)
            if not line.startswith("ready"):
                raise RuntimeError(f"probe failed: {args}")
            best = min(best, elapsed)
    return best


def bench_startup() -> None:
    """Process start to the first chart drawn with data, beside a bare PySide6+pyqtgraph window."""
    probe = str(HERE / "_startup_probe.py")
    emit("startup_bare_pyside6_pyqtgraph", _time_to_ready([probe, "bare"]), "s")
    emit("startup_ketamon_demo_first_chart", _time_to_ready([probe, "ketamon"]), "s")


def bench_decode() -> None:
    """Decode throughput per protocol, as a multiple of the protocol's nominal line rate."""
    from devices.loopback import run_loopback
    from devices.protocols import protocol_class, wire_protocols
    from devices.readings import utcnow
    from devices.scenarios import get_scenario

    for name in wire_protocols():
        try:
            cls = protocol_class(name)
            capture = run_loopback(name, get_scenario("stable"), 1800.0).device_to_host
        except Exception as exc:  # a protocol not built yet is reported, not fatal
            print(f"decode_{name}: unavailable ({type(exc).__name__}: {exc})")
            continue
        now = utcnow()
        chunk = 256
        reps = max(1, int(2_000_000 / max(len(capture), 1)))
        t0 = time.perf_counter()
        n = 0
        for _ in range(reps):
            proto = cls(source="bench")  # fresh: de-duplication memory survives reset()
            for i in range(0, len(capture), chunk):
                n += len(proto.feed(capture[i : i + chunk], now))
        dt = time.perf_counter() - t0
        rate = len(capture) * reps / dt
        emit(f"decode_{name}_bytes_per_s", rate, "B/s")
        emit(f"decode_{name}_line_rate_multiple", rate / cls.nominal_bytes_per_s, "x")
        emit(f"decode_{name}_readings_per_s", n / dt, "readings/s")


def bench_ingest() -> None:
    """Sustained writer ingest, on a plain and on a SQLCipher-encrypted file in the same run,
    vs raw sqlite3 executemany on the same kind of file."""
    from ketamon.storage.crypto import raw_key

    with tempfile.TemporaryDirectory() as d:
        plain, committed, commits = _ingest_writer(
            f"sqlite:///{d}/bench.sqlite3", "", exposure=True
        )
        # the same, encrypted at rest (a random raw key, as the keyring key source gives it)
        url = f"sqlite+pysqlcipher://:{raw_key(os.urandom(32))}@/{d}/bench-sqlcipher.sqlite3"
        cipher, _, _ = _ingest_writer(url, "_sqlcipher")
        emit("ingest_sqlcipher_relative_rate", cipher / plain * 100, "%")
        _ingest_raw(d, committed, commits)


def _ingest_writer(url: str, suffix: str, *, exposure: bool = False) -> tuple[float, int, int]:
    """The writer's sustained rate on ``url`` (16 producer threads); returns it, and the
    readings and commits at saturation."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from devices.readings import Quality, make_reading
    from ketamon.services import (
        get_or_create_patient,
        open_database,
        start_session,
        system_user_id,
    )
    from ketamon.storage.models import VitalReading
    from ketamon.storage.writer import DatabaseWriter

    n_total = 100_000
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        make_reading("hr", 70 + i % 10, t0 + timedelta(seconds=i), quality=Quality.DEMO)
        for i in range(1000)
    ]
    engine = open_database(url)
    writer = DatabaseWriter(engine, user_id=system_user_id(engine)).start()

    def mk(s: Session) -> int:
        p = get_or_create_patient(s, "B", "B", "B")
        return start_session(s, chair="b", patient=p, device="bench", started=t0).id

    sid = writer.call(mk)
    start = time.perf_counter()

    # 16 producer threads, like 16 chairs, each submitting batches of 10.
    def produce() -> None:
        for k in range(0, n_total // 16, 10):
            writer.submit_readings(sid, readings[k % 990 : k % 990 + 10])

    threads = [threading.Thread(target=produce) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.wait_idle(120)
    dt = time.perf_counter() - start
    committed, commits = writer.stats.readings_committed, writer.stats.commits
    emit(f"ingest_writer_sustained{suffix}", committed / dt, "readings/s")
    if exposure:
        emit("ingest_writer_commits_at_saturation", commits, "commits")
        # Exposure window at a clinic's load: 16 chairs, each 5 numerics/s, for 5 s.
        writer.stats.max_exposure_s = 0.0
        end = time.perf_counter() + 5.0
        while time.perf_counter() < end:
            for c in range(16):
                writer.submit_readings(sid, readings[c : c + 5])
            time.sleep(1.0)
        writer.wait_idle(30)
        emit("ingest_writer_exposure_max_16_chairs", writer.stats.max_exposure_s * 1000, "ms")
    stored = writer.stats.readings_committed
    writer.stop()
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(VitalReading)) == stored
    engine.dispose()
    return committed / dt, committed, commits


def _ingest_raw(d: str, committed: int, commits: int) -> None:
    from devices.readings import Quality, make_reading

    n_total = 100_000
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        make_reading("hr", 70 + i % 10, t0 + timedelta(seconds=i), quality=Quality.DEMO)
        for i in range(1000)
    ]
    con = sqlite3.connect(f"{d}/raw.sqlite3")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    # The same shape as vital_reading, with its (session_id, host_time) index.
    con.execute(
        "CREATE TABLE r (id INTEGER PRIMARY KEY, session_id INT, parameter TEXT, value REAL,"
        " unit TEXT, mdc TEXT, host_time TEXT, device_time TEXT, quality INT, source TEXT,"
        " entered_by_id INT)"
    )
    con.execute("CREATE INDEX r_session_time ON r (session_id, host_time)")
    rows = [
        (1, r.parameter, r.value, r.unit, r.mdc, r.host_time.isoformat(), None, 8, "bench")
        for r in readings
    ]
    start = time.perf_counter()
    done = 0
    # Same commit cadence as the writer achieved: one transaction per batch it committed.
    per_commit = max(1, committed // max(1, commits))
    while done < n_total:
        batch = (rows * (per_commit // len(rows) + 1))[:per_commit]
        with con:
            con.executemany(
                "INSERT INTO r (session_id, parameter, value, unit, mdc, host_time,"
                " device_time, quality, source) VALUES (?,?,?,?,?,?,?,?,?)",
                batch,
            )
        done += len(batch)
    dt = time.perf_counter() - start
    con.close()
    emit("ingest_raw_sqlite3_executemany", done / dt, "readings/s")


def bench_station() -> None:
    """16 chairs on one station: CPU share, event-loop lag, pty byte to flag drawn."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, str(HERE / "_station_probe.py"), "100"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("station16_")]
    if out.returncode != 0 or not lines:
        print(f"station16: failed ({out.stderr.strip()[-500:]})")
        return
    for line in lines:
        print(line, flush=True)


def bench_chart() -> None:
    """Redraw cost of the trend chart holding 2 h and 8 h of 1 Hz data (offscreen)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for hours in ("2", "8"):
        out = subprocess.run(
            [sys.executable, str(HERE / "_chart_probe.py"), hours],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("chart_")]
        print(
            lines[0] if lines else f"chart_redraw_{hours}h: failed ({out.stderr[-300:]})",
            flush=True,
        )


def bench_restore() -> None:
    """A restart mid-session: resume until the state is folded and 2 h of history drawn."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, str(HERE / "_restore_probe.py"), "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("restore")]
    print("\n".join(lines) if lines else f"restore: failed ({out.stderr[-500:]})", flush=True)


def _audit_database(path: Path, audit_rows: int) -> tuple[int, int]:
    """A SQLite database at head with about ``audit_rows`` chained audit rows: sessions of 100
    entries (each with its audit copy, every 10th session signed) among device and tidy-table
    audit rows, ~5 per entry. Written with executemany, not the ORM. Returns (rows, entries)."""
    import json

    from ketamon.domain.integrity import canonical_sha256
    from ketamon.domain.record import EntryKind, SessionEntry
    from ketamon.services import open_database
    from ketamon.storage.chain import audit_hash, chain_tail, session_entry_hash

    engine = open_database(f"sqlite:///{path}")
    with engine.connect() as conn:
        tail_id, prev = chain_tail(conn)
    engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    audit_sql = (
        "INSERT INTO audit_entry (id, at, utc_offset_s, user_id, action, entity, entity_id, "
        "session_id, field, old_value, new_value, reason, station, prev_hash, entry_hash, "
        "subject_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    entry_sql = (
        "INSERT INTO session_entry (id, session_id, kind, at, recorded_at, author_id, "
        "authorised_by_id, data, ref_id) VALUES (?,?,?,?,?,?,?,?,?)"
    )
    per_entry, per_session = 6, 100
    aid, eid, sid, n_entries = tail_id, 0, 0, 0
    audits: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []

    def audit(when: datetime, **row: Any) -> None:
        nonlocal aid, prev
        aid += 1
        full = {
            "id": aid,
            "at": when,
            "utc_offset_s": 3600,
            "user_id": 1,
            "action": "create",
            "entity_id": None,
            "session_id": sid,
            "field": None,
            "old_value": None,
            "reason": None,
            "station": "chair-1",
            "prev_hash": prev,
            "subject_hash": None,
            **row,
        }
        prev = audit_hash(full)
        audits.append(
            (
                *(
                    full[k] if k != "at" else when.strftime(fmt)
                    for k in (
                        "id",
                        "at",
                        "utc_offset_s",
                        "user_id",
                        "action",
                        "entity",
                        "entity_id",
                        "session_id",
                        "field",
                        "old_value",
                        "new_value",
                        "reason",
                        "station",
                        "prev_hash",
                    )
                ),
                prev,
                full["subject_hash"],
            )
        )

    con.execute("BEGIN")
    while aid - tail_id < audit_rows:
        sid += 1
        session: list[SessionEntry] = []
        for k in range(per_session):
            eid += 1
            n_entries += 1
            when = t0 + timedelta(minutes=sid * 200 + k)
            sign = k == per_session - 1 and sid % 10 == 0
            data: dict[str, Any] = (
                {"covers_entry_id": eid - 1, "content_sha256": canonical_sha256(session)}
                if sign
                else {"score": k % 6, "text": f"entry {k} — «ok»"}
            )
            kind = EntryKind.SIGNED if sign else EntryKind.NOTE
            text_data = json.dumps(data, ensure_ascii=False)
            row = {
                "id": eid,
                "session_id": sid,
                "kind": kind.value,
                "at": when,
                "recorded_at": when,
                "author_id": 1,
                "authorised_by_id": None,
                "data": text_data,
                "ref_id": None,
            }
            entries.append(
                (
                    eid,
                    sid,
                    kind.value,
                    when.strftime(fmt),
                    when.strftime(fmt),
                    1,
                    None,
                    text_data,
                    None,
                )
            )
            session.append(SessionEntry(eid, sid, kind, when, 1, "", data))
            audit(
                when,
                entity="session_entry",
                entity_id=eid,
                new_value=json.dumps(data, ensure_ascii=False, sort_keys=True),
                subject_hash=session_entry_hash(row),
            )
            for j in range(per_entry - 1):
                audit(
                    when + timedelta(seconds=j + 1),
                    entity="vital_reading",
                    entity_id=aid,
                    new_value=f'{{"parameter": "hr", "source": "manual", "value": {60 + j}}}',
                )
        if len(audits) > 100_000:
            con.executemany(audit_sql, audits)
            con.executemany(entry_sql, entries)
            audits.clear()
            entries.clear()
    con.executemany(audit_sql, audits)
    con.executemany(entry_sql, entries)
    con.commit()
    con.close()
    return aid, n_entries


def bench_audit_verify() -> None:
    """``ketamon audit verify`` (in-process) over a SQLite database of ~2 million audit rows."""
    from ketamon.storage.database import make_engine
    from ketamon.storage.verify import verify_audit

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.sqlite3"
        t0 = time.perf_counter()
        rows, entries = _audit_database(path, 2_000_000)
        print(f"# built {rows} audit rows, {entries} entries in {time.perf_counter() - t0:.0f} s")
        engine = make_engine(f"sqlite:///{path}")
        try:
            t0 = time.perf_counter()
            report = verify_audit(engine)
            dt = time.perf_counter() - t0
        finally:
            engine.dispose()
        if not report.intact:
            print(f"audit_verify: failed ({report.summary()})", flush=True)
            return
        emit("audit_verify_2m_rows", dt, "s")
        emit("audit_verify_rate", report.audit_rows / dt, "rows/s")


def bench_review() -> None:
    """The review desk: open a finished session and draw it (best of 3): 3 hours of numerics,
    and 8 hours of 5 numerics at 1 Hz with the 125 Hz pleth (3.7 million samples)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for args in (["3"], ["8", "--pleth"]):
        out = subprocess.run(
            [sys.executable, str(HERE / "_review_probe.py"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=900,
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("review_open")]
        print("\n".join(lines) if lines else f"review: failed ({out.stderr[-500:]})", flush=True)


def bench_export() -> None:
    """An 8-hour session (5 numerics at 1 Hz, NIBP every 5 min), ended and signed, exported to
    each format (benchmarks/_export_probe.py: time and size), and queued for HL7 out."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, str(HERE / "_export_probe.py"), "8"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith(("export_", "hl7_out_"))]
    print("\n".join(lines) if lines else f"export: failed ({out.stderr[-500:]})", flush=True)


def bench_fuzz() -> None:
    """Single and double bit flips of every field-corpus vector, per protocol (_fuzz.py):
    frames tried, crashes, corrupted frames accepted (past the checksum or the field rules) and
    implausible values among them."""
    from benchmarks._fuzz import run
    from devices.protocols import wire_protocols

    for name, by_kind in run(wire_protocols()).items():
        emit(f"fuzz_{name}_vectors", by_kind["single"].vectors, "captures")
        for kind, res in by_kind.items():
            p = f"fuzz_{name}_{kind}"
            emit(f"{p}_frames_tried", res.frames_tried, "frames")
            emit(f"{p}_crashes", res.crashes, "frames")
            emit(f"{p}_corrupt_frames_accepted", res.corrupt_accepted, "frames")
            emit(f"{p}_implausible_values_accepted", res.implausible_accepted, "frames")
        emit(f"fuzz_{name}_seconds", by_kind["single"].seconds, "s")


def bench_clinic() -> None:
    """64 chairs on 4 ``ketamon station`` processes into a fresh database on the PostgreSQL
    server of KETAMON_TEST_POSTGRES_URL, and a central view offscreen (_clinic_probe.py):
    ingest rate, server CPU share, station flag to central flag drawn, drain after a 60 s outage
    (a TCP proxy cut), station RSS per chair. About 4 minutes."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, str(HERE / "_clinic_probe.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("clinic_")]
    if out.returncode != 0 or not lines:
        print(f"clinic: failed ({out.stderr.strip()[-800:]})", flush=True)
        return
    print("\n".join(lines), flush=True)


def bench_soak() -> None:
    """16 simulated chairs on the app's station (headless, SQLite) for 12 simulated hours at
    60x (12 real minutes; _soak_probe.py): RSS growth and the writer's commit latency.
    KETAMON_BENCH_SOAK="HOURS SPEED" changes the run (e.g. "1 1" for one real hour)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    hours, speed = os.environ.get("KETAMON_BENCH_SOAK", "12 60").split()
    out = subprocess.run(
        [sys.executable, str(HERE / "_soak_probe.py"), hours, speed],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=3 * 3600,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("soak_")]
    if out.returncode != 0 or not lines:
        print(f"soak: failed ({out.stderr.strip()[-800:]})", flush=True)
        return
    print("\n".join(lines), flush=True)


def bench_reconnect() -> None:
    """Replugs: each serial protocol's emulator on a pty, read by ``ketamon record``; the cable
    is pulled for 10 s (the pty closed and its path removed, as an unplugged USB adapter does),
    then plugged back on the same path, 3 times: the time from the replug to the first reading
    printed again, and to the port being open again. The emulators run at real speed: their
    own cadence counts (the HL7 emulator sends every 5 s, the others every second)."""
    replugs, pull_s = 3, 10.0
    from devices.emulators import emulator_class
    from devices.emulators.base import PtyServer
    from devices.protocols import wire_protocols
    from devices.scenarios import Link, get_scenario

    # the recording database's encryption is beside the point here: a plain file
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KETAMON_DB_KEY_SOURCE": "none"}
    env.pop("KETAMON_DATABASE_URL", None)
    every: list[float] = []
    reopens: list[float] = []
    for protocol in [p for p in wire_protocols() if p != "simulator"]:
        with tempfile.TemporaryDirectory() as d:
            link = Path(d) / "monitor"
            server = PtyServer(emulator_class(protocol)(get_scenario("stable")), link=link)
            server.start()
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ketamon",
                    "--data-dir",
                    f"{d}/data",
                    "record",
                    "--protocol",
                    protocol,
                    "--port",
                    str(link),
                    "--db",
                    f"sqlite:///{d}/rec.sqlite3",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            arrivals: list[float] = []  # a reading printed
            opened: list[float] = []  # the port opened ("negotiating: connected to ...")

            def read(
                child: subprocess.Popen[str] = child, arrivals: list[float] = arrivals
            ) -> None:
                assert child.stdout is not None
                for _line in child.stdout:
                    arrivals.append(time.monotonic())

            def status(child: subprocess.Popen[str] = child, opened: list[float] = opened) -> None:
                assert child.stderr is not None
                for line in child.stderr:
                    if "negotiating: connected" in line:
                        opened.append(time.monotonic())

            readers = [threading.Thread(target=f, daemon=True) for f in (read, status)]
            for r in readers:
                r.start()
            try:
                end = time.monotonic() + 60
                while len(arrivals) < 3 and time.monotonic() < end:
                    time.sleep(0.05)
                if len(arrivals) < 3:
                    print(f"reconnect_resume_{protocol}: failed (no readings)", flush=True)
                    continue
                resumes: list[float] = []
                for _ in range(replugs):
                    server.force_link(Link.PULLED)
                    time.sleep(pull_s)
                    server.force_link(None)
                    t_plug = time.monotonic()
                    end = t_plug + 60
                    while not any(t > t_plug for t in arrivals) and time.monotonic() < end:
                        time.sleep(0.01)
                    got = [t for t in arrivals if t > t_plug]
                    if not got:
                        print(f"reconnect_resume_{protocol}: failed (none in 60 s)", flush=True)
                        break
                    resumes.append(got[0] - t_plug)
                    reopened = [t for t in opened if t > t_plug]
                    if reopened:
                        reopens.append(reopened[0] - t_plug)
                    time.sleep(1.0)
                if resumes:
                    every.extend(resumes)
                    emit(f"reconnect_resume_{protocol}_max", max(resumes), "s")
            finally:
                child.terminate()
                child.wait(30)
                server.stop()
                for r in readers:
                    r.join(5)
                for stream in (child.stdout, child.stderr):
                    if stream is not None:
                        stream.close()
    if every:
        every.sort()
        emit("reconnect_resume_s_p50", every[len(every) // 2], "s")
        emit("reconnect_resume_s", every[-1], f"s (worst of {len(every)} replugs)")
    if reopens:
        emit("reconnect_port_reopened_max", max(reopens), "s (replug to the port open again)")


BENCHMARKS: dict[str, Callable[[], None]] = {
    "startup": bench_startup,
    "decode": bench_decode,
    "ingest": bench_ingest,
    "station": bench_station,
    "chart": bench_chart,
    "restore": bench_restore,
    "review": bench_review,
    "audit_verify": bench_audit_verify,
    "fuzz": bench_fuzz,
    "export": bench_export,
    "clinic": bench_clinic,
    "soak": bench_soak,
    "reconnect": bench_reconnect,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    for n in names:
        BENCHMARKS[n]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
