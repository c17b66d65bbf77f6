"""The tamper-evident audit trail (clinical.md §8 items 37–38), on both backends: a populated
database verifies intact; a thousand random single-field edits, made with plain SQL after
dropping the append-only triggers (as someone with the database file would), are every one
reported; writers racing on the chain leave it intact; old databases are back-filled; the
``ketamon audit verify`` command."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from devices.readings import make_reading
from ketamon.cli import main
from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.ports import AuthFailed, EntryDraft
from ketamon.core.session import ChairCore
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, PatientInfo, Plan
from ketamon.domain.roles import Actor, Role
from ketamon.domain.session_rules import Treatment
from ketamon.domain.thresholds import parse_profile
from ketamon.resources import read_text
from ketamon.services import get_or_create_patient, open_database
from ketamon.storage import users
from ketamon.storage.audit import AuditError, acting_as, append_entry
from ketamon.storage.chain import GENESIS, audit_hash
from ketamon.storage.database import make_engine
from ketamon.storage.migrate import alembic_config
from ketamon.storage.models import AuditAction, AuditEntry, utcnow
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.verify import verify_audit
from tests.storage.conftest import PASSWORD, Staff

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}
EDITS = 1000

AUDIT_COLUMNS = (
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
    "entry_hash",
    "subject_hash",
)
ENTRY_COLUMNS = (
    "id",
    "session_id",
    "kind",
    "at",
    "recorded_at",
    "author_id",
    "authorised_by_id",
    "data",
    "ref_id",
)
TIMES = {"at", "recorded_at"}
INTS = {
    "id",
    "utc_offset_s",
    "user_id",
    "entity_id",
    "session_id",
    "author_id",
    "authorised_by_id",
    "ref_id",
}
JSONS = {"old_value", "new_value", "data"}


# ---- a populated database ---------------------------------------------------------------------


class DbPasswords:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def verify(self, username: str, password: str) -> Actor:
        try:
            u = users.authenticate(self.engine, username, password)
        except users.AuthError as exc:
            raise AuthFailed(str(exc)) from exc
        return Actor(u.id, u.username, u.full_name, Role(u.role.value))


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def run_session(engine: Engine, staff: Staff, mrn: str, start: datetime, finish: bool) -> int:
    """A session through the chair core on the SQL repository; returns its id."""
    repo = SqlSessionRepository(engine)
    prof = parse_profile(read_text("thresholds.toml"), "thresholds.toml")
    clock = Clock(start)
    alarms = AlarmEngine(prof)
    core = ChairCore(
        "Chair 1", repo, DbPasswords(engine), prof, clock, alarms=EngineAlarms(alarms, clock)
    )
    nurse = Actor(staff.nurse, "nina", "Nina Nurse", Role.NURSE)
    doc = Actor(staff.physician, "paul", "Paul Physician", Role.PHYSICIAN)
    latest: dict[str, tuple[float, datetime]] = {}

    def readings(**values: float) -> None:
        rs = [make_reading(k, v, clock.now) for k, v in values.items()]
        for r in rs:
            latest[r.parameter] = (r.value, clock.now)
        events = alarms.process(rs)
        if events and core.state is not None:
            core.execute(c.RecordAlarmEvents(events), core.system(), latest)

    def do(cmd: c.Command, who: Actor = nurse) -> None:
        core.execute(cmd, who, latest)

    patient = PatientInfo(None, mrn, "Zoë", "Ünïcode", weight_kg=70.0, rems_enrolled=True)
    do(c.StartSession(patient, Plan(Treatment.ESKETAMINE, dose_mg=56.0), "simulator", True))
    assert core.state is not None
    sid = core.state.session_id
    readings(nibp_sys=128, nibp_dia=82, hr=72, spo2=98, rr=14)
    clock.advance(1)
    do(c.RecordScreening((128, 82), 72, "manual", True, True, rems_enrolled=True))
    do(c.LogDevice("LOT-A"))
    clock.advance(5)
    do(c.LogDevice("LOT-A"))
    clock.advance(3)
    readings(spo2=86, rr=14)
    do(c.Acknowledge())
    readings(spo2=97)
    do(c.RecordMoaas(3))
    do(c.RecordSideEffects([c.SideEffectInput("nausea", "mild")]))
    do(c.AddNote("resting — «quiet»"))
    do(c.RecordVitals({"nibp_sys": 135, "nibp_dia": 85, "hr": 70}))
    state = core.state
    assert state is not None
    moaas = state.live(EntryKind.MOAAS)[-1].entry_id
    do(c.Correct(moaas, {"score": 4}, "scored the wrong row"))
    do(c.ChangeLimit("spo2", 88, None, "COPD"), doc)
    if finish:
        clock.advance(120)
        readings(nibp_sys=124, nibp_dia=80, hr=68, spo2=98, rr=14)
        do(c.RecordMoaas(5))
        do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
    return sid


def sign(engine: Engine, staff: Staff, sid: int, kind: EntryKind, extra: dict[str, Any]) -> None:
    """A signature entry over everything before it (as the signing side makes one)."""
    repo = SqlSessionRepository(engine)
    doc = Actor(staff.physician, "paul", "Paul Physician", Role.PHYSICIAN)
    before = repo.load(sid)
    data = {
        **extra,
        "covers_entry_id": before[-1].id,
        "content_sha256": canonical_sha256(before),
    }
    when = max(e.at for e in before) + timedelta(minutes=5)
    repo.append(sid, [EntryDraft(kind, when, data)], doc)


def populate(engine: Engine, staff: Staff) -> None:
    signed = run_session(engine, staff, "MRN-1", T0, finish=True)
    run_session(engine, staff, "MRN-2", T0 + timedelta(hours=3), finish=False)
    sign(engine, staff, signed, EntryKind.SIGNED, {"meaning": "reviewed", "name": "Paul"})
    sign(engine, staff, signed, EntryKind.ADDENDUM, {"text": "called the patient: well"})


@pytest.fixture
def populated(engine: Engine, staff: Staff) -> Engine:
    populate(engine, staff)
    return engine


def test_a_populated_database_verifies_intact(populated: Engine) -> None:
    report = verify_audit(populated)
    assert report.first_break is None, report.summary()
    with populated.connect() as conn:
        n_audit = conn.execute(text("SELECT count(*) FROM audit_entry")).scalar()
        n_entries = conn.execute(text("SELECT count(*) FROM session_entry")).scalar()
        rows = conn.execute(
            text("SELECT id, prev_hash, entry_hash FROM audit_entry ORDER BY id")
        ).all()
    assert (report.audit_rows, report.session_entries, report.signatures) == (
        n_audit,
        n_entries,
        2,
    )
    assert n_entries and n_entries > 30 and n_audit and n_audit > n_entries
    assert rows[0][1] == GENESIS
    assert all(b[1] == a[2] for a, b in itertools.pairwise(rows))
    assert report.summary() == (
        f"audit: intact ({n_audit} audit rows, {n_entries} session entries, 2 signatures)"
    )


def test_audit_entries_cannot_be_added_as_objects(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin():
        s.add(
            AuditEntry(
                at=utcnow(),
                user_id=staff.nurse,
                action=AuditAction.LOGIN,
                entity="app_user",
                station="",
            )
        )
        with pytest.raises(AuditError, match="hash-chained"):
            s.flush()
        s.rollback()


# ---- a thousand single-field edits --------------------------------------------------------------


def _mutate_text(rng: random.Random, old: str) -> str:
    if not old:
        return rng.choice("abcxyz0")
    i = rng.randrange(len(old))
    roll = rng.random()
    if roll < 0.5:  # change one character
        pool = "0123456789abcdef" if all(ch in "0123456789abcdef" for ch in old) else "aZé9 ,"
        new_ch = rng.choice([ch for ch in pool if ch != old[i]])
        return old[:i] + new_ch + old[i + 1 :]
    if roll < 0.75:
        return old[:i] + old[i + 1 :]  # drop one
    return old[:i] + rng.choice("x1 ") + old[i:]  # insert one


def _mutate_json(rng: random.Random, old: str) -> str:
    try:
        value = json.loads(old)
    except ValueError:
        return _mutate_text(rng, old)
    leaves: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, dict | list) and v:
                walk(v)
            else:
                leaves.append((node, k))

    if isinstance(value, dict | list) and value:
        walk(value)
    if not leaves or rng.random() < 0.2:
        return _mutate_text(rng, old)
    node, key = rng.choice(leaves)
    v = node[key]
    if isinstance(v, bool):
        node[key] = not v
    elif isinstance(v, int | float):
        node[key] = v + rng.choice([1, -1, 0.5])
    elif isinstance(v, str):
        node[key] = v + "x" if rng.random() < 0.5 else v[:-1]
    elif v is None:
        node[key] = 0
    else:
        node[key] = None
    return json.dumps(value, ensure_ascii=False)


def new_value(rng: random.Random, column: str, old: Any, top_id: int) -> Any:
    if old is not None and rng.random() < 0.08:
        return None
    if column in TIMES:
        when = old if isinstance(old, datetime) else datetime.fromisoformat(str(old))
        shift = timedelta(microseconds=rng.choice([1, 1000, 10**6, 3600 * 10**6, 86400 * 10**6]))
        return when + (shift if rng.random() < 0.5 else -shift)
    if column in INTS:
        if column == "id":
            return top_id + rng.randint(1, 1000)
        base = 0 if old is None else int(old)
        return base + rng.choice([1, -1, 2, 3600])
    if column in JSONS and old is not None:
        return _mutate_json(rng, str(old))
    return _mutate_text(rng, "" if old is None else str(old))


@dataclass
class Target:
    table: str
    id: int
    column: str


def targets(execute: Callable[[str], Iterable[Any]]) -> list[tuple[str, int]]:
    rows = [("audit_entry", int(r[0])) for r in execute("SELECT id FROM audit_entry")]
    return rows + [("session_entry", int(r[0])) for r in execute("SELECT id FROM session_entry")]


def pick(rng: random.Random, rows: list[tuple[str, int]]) -> Target:
    # Half the edits on session entries, though they are the fewer rows.
    table = "session_entry" if rng.random() < 0.5 else "audit_entry"
    ids = [i for t, i in rows if t == table]
    column = rng.choice(ENTRY_COLUMNS if table == "session_entry" else AUDIT_COLUMNS)
    return Target(table, rng.choice(ids), column)


def _sqlite_edit(db: Path, target: Target, rng: random.Random, top_id: int) -> bool:
    """Edit one field with plain sqlite3 (triggers dropped, foreign keys off); False if the
    edit changed nothing or the database refused it."""
    con = sqlite3.connect(db)
    try:
        con.execute("DROP TRIGGER IF EXISTS audit_entry_no_update")
        con.execute("DROP TRIGGER IF EXISTS session_entry_no_update")
        t, col = target.table, target.column
        read = f"SELECT {col}, typeof({col}) FROM {t} WHERE rowid = ?"
        before = con.execute(read, (target.id,)).fetchone()
        value = new_value(rng, col, before[0], top_id)
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        try:
            con.execute(f"UPDATE {t} SET {col} = ? WHERE id = ?", (value, target.id))
        except sqlite3.DatabaseError:
            return False
        rowid = value if col == "id" else target.id
        after = con.execute(read, (rowid,)).fetchone()
        if after == before:
            return False
        con.commit()
        return True
    finally:
        con.close()


def test_a_thousand_single_field_edits_are_all_reported(
    tmp_path: Path, staff: Staff, engine: Engine
) -> None:
    populate(engine, staff)
    if engine.dialect.name == "postgresql":
        edits_on_postgresql(engine)
        return
    master = Path(str(engine.url.database))
    engine.dispose()  # checkpoints the WAL into the file
    with sqlite3.connect(master) as con:
        rows = targets(con.execute)
    top = max(i for _, i in rows)
    rng = random.Random(20261130)
    work = tmp_path / "edited.sqlite3"
    edited: list[Target] = []
    missed: list[Target] = []
    started = time.perf_counter()
    while len(edited) < EDITS:
        shutil.copyfile(master, work)
        target = pick(rng, rows)
        if not _sqlite_edit(work, target, rng, top):
            continue
        edited.append(target)
        e = make_engine(f"sqlite:///{work}")
        try:
            report = verify_audit(e)
        finally:
            e.dispose()
        if report.intact:
            missed.append(target)
    elapsed = time.perf_counter() - started
    print(f"\nsqlite: {EDITS} edits verified in {elapsed:.1f} s")
    check(edited, missed)


def check(edited: list[Target], missed: list[Target]) -> None:
    """Every edit reported, and every column of both tables was among those edited."""
    assert missed == []
    every = {("audit_entry", col) for col in AUDIT_COLUMNS}
    every |= {("session_entry", col) for col in ENTRY_COLUMNS}
    assert {(t.table, t.column) for t in edited} == every


def _pg_edit(conn: Connection, target: Target, rng: random.Random, top_id: int) -> bool:
    t, col = target.table, target.column
    read = text(f"SELECT {col} FROM {t} WHERE id = :id")
    before = conn.execute(read, {"id": target.id}).scalar()
    value = new_value(rng, col, before, top_id)
    sp = conn.begin_nested()
    try:
        conn.execute(
            text(f"UPDATE {t} SET {col} = :v WHERE id = :id"), {"v": value, "id": target.id}
        )
    except Exception:
        sp.rollback()
        return False
    sp.commit()
    rowid = value if col == "id" else target.id
    after = conn.execute(read, {"id": rowid}).scalar()
    return bool(after != before)


def edits_on_postgresql(engine: Engine) -> None:
    """Each edit in a transaction, verified on that connection, rolled back."""
    with engine.connect() as conn:
        rows = targets(conn.exec_driver_sql)
    top = max(i for _, i in rows)
    rng = random.Random(20261130)
    edited: list[Target] = []
    missed: list[Target] = []
    started = time.perf_counter()
    with engine.connect() as conn:
        while len(edited) < EDITS:
            target = pick(rng, rows)
            with conn.begin() as tx:
                # an attacker with the owner's password: the append-only triggers off
                conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
                conn.exec_driver_sql("ALTER TABLE session_entry DISABLE TRIGGER USER")
                if _pg_edit(conn, target, rng, top):
                    edited.append(target)
                    if verify_audit(conn).intact:
                        missed.append(target)
                tx.rollback()
    elapsed = time.perf_counter() - started
    print(f"\npostgresql: {EDITS} edits verified in {elapsed:.1f} s")
    check(edited, missed)


def test_the_first_break_is_named(populated: Engine) -> None:
    def tamper(sql: str) -> dict[str, Any]:
        with populated.connect() as conn, conn.begin() as tx:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
                conn.exec_driver_sql("ALTER TABLE session_entry DISABLE TRIGGER USER")
            else:
                for name in ("audit_entry", "session_entry"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_update")
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_delete")
            conn.exec_driver_sql(sql)
            report = verify_audit(conn)
            tx.rollback()
        assert not report.intact and report.first_break is not None
        return report.to_json_dict()["first_break"]

    with populated.connect() as conn:
        a4, a5 = conn.execute(
            text("SELECT id FROM audit_entry ORDER BY id LIMIT 2 OFFSET 4")
        ).scalars()
        a6 = conn.execute(
            text("SELECT min(id) FROM audit_entry WHERE id > :i"), {"i": a5}
        ).scalar()
        e = conn.execute(text("SELECT min(id) FROM session_entry WHERE kind = 'note'")).scalar()
        a_e = conn.execute(
            text("SELECT id FROM audit_entry WHERE entity = 'session_entry' AND entity_id = :e"),
            {"e": e},
        ).scalar()
        sig = conn.execute(text("SELECT id FROM session_entry WHERE kind = 'signed'")).scalar()
    got = tamper(f"UPDATE audit_entry SET reason = 'nothing to see' WHERE id = {a5}")
    assert got["message"] == f"audit_entry {a5}: entry_hash does not match its content"
    got = tamper(f"UPDATE audit_entry SET prev_hash = '{'1' * 64}' WHERE id = {a6}")
    assert got["message"] == f"audit_entry {a6}: prev_hash does not match audit_entry {a5}"
    got = tamper(f"DELETE FROM audit_entry WHERE id = {a5}")
    assert got["message"] == f"audit_entry {a6}: prev_hash does not match audit_entry {a4}"
    got = tamper(f'UPDATE session_entry SET data = \'{{"text": "edited"}}\' WHERE id = {e}')
    assert got == {
        "table": "session_entry",
        "id": e,
        "kind": None,
        "problem": f"data differs from its audit copy (audit_entry {a_e})",
        "message": f"session_entry {e}: data differs from its audit copy (audit_entry {a_e})",
    }
    got = tamper(f"UPDATE session_entry SET kind = 'vitals' WHERE id = {e}")
    assert got["message"].startswith(f"session_entry {e}: row does not match its seal")
    # An attacker who also fixes the audit copy and re-chains everything still breaks the
    # signature over the entry.
    with populated.connect() as conn, conn.begin() as tx:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
            conn.exec_driver_sql("ALTER TABLE session_entry DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS session_entry_no_update")
        conn.execute(
            text("UPDATE session_entry SET data = :d WHERE id = :e"),
            {"d": json.dumps({"text": "edited"}), "e": e},
        )
        conn.execute(
            text("UPDATE audit_entry SET new_value = :d WHERE id = :a"),
            {"d": json.dumps({"text": "edited"}), "a": a_e},
        )
        rechain(conn)
        report = verify_audit(conn)
        tx.rollback()
    assert report.first_break is not None
    assert report.first_break.message == (
        f"session_entry {sig} (signed): content hash does not match the signed entries"
    )


def rechain(conn: Connection) -> None:
    """Recompute every seal and hash (what a thorough attacker would do)."""
    from ketamon.storage.chain import session_entry_hash

    prev = GENESIS
    audits = conn.execute(text("SELECT * FROM audit_entry ORDER BY id")).mappings().all()
    for a in audits:
        row = dict(a)
        if row["entity"] == "session_entry":
            entry = (
                conn.execute(
                    text("SELECT * FROM session_entry WHERE id = :i"), {"i": row["entity_id"]}
                )
                .mappings()
                .one()
            )
            row["subject_hash"] = session_entry_hash(entry)
        row["prev_hash"] = prev
        row["entry_hash"] = prev = audit_hash(row)
        conn.execute(
            text(
                "UPDATE audit_entry SET prev_hash = :p, entry_hash = :h, subject_hash = :s "
                "WHERE id = :i"
            ),
            {
                "p": row["prev_hash"],
                "h": row["entry_hash"],
                "s": row["subject_hash"],
                "i": a["id"],
            },
        )


# ---- concurrency ----------------------------------------------------------------------------


def test_writers_racing_on_the_chain_leave_it_intact(engine: Engine, staff: Staff) -> None:
    threads_n, each = 4, 15
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            barrier.wait(10)
            for i in range(each):
                with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
                    if i % 2:
                        append_entry(s, action=AuditAction.LOGIN, entity="app_user", entity_id=k)
                    else:
                        get_or_create_patient(s, f"MRN-{k}-{i}", "Ada", "Lovelace")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    report = verify_audit(engine)
    assert report.intact, report.summary()
    with engine.connect() as conn:
        logins = conn.execute(text("SELECT count(*) FROM audit_entry WHERE action = 'login'"))
        assert logins.scalar() == threads_n * (each // 2)


# ---- an existing database is back-filled ------------------------------------------------------


def test_an_existing_database_gets_its_chain_on_upgrade(engine: Engine, staff: Staff) -> None:
    populate(engine, staff)
    with engine.begin() as conn:  # back to revision 0002 (the hashes stay; wipe them)
        command.downgrade(alembic_config(connection=conn), "0002")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_update")
        conn.exec_driver_sql("UPDATE audit_entry SET prev_hash = NULL, entry_hash = NULL")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_entry ENABLE TRIGGER USER")
        else:
            from ketamon.storage.migrations.versions.v0003_audit_hash_chain import (
                SQLITE_NO_UPDATE,
            )

            conn.exec_driver_sql(SQLITE_NO_UPDATE)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    again = open_database(url)
    try:
        report = verify_audit(again)
        assert report.intact, report.summary()
        assert report.signatures == 2
        with again.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.exec_driver_sql("UPDATE audit_entry SET reason = 'x'")
    finally:
        again.dispose()


# ---- the command --------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ketamon_audit_verify(
    populated: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = populated.url.render_as_string(hide_password=False)
    base = ["--data-dir", str(tmp_path / "data"), "--db", url]
    code, out, err = run_cli(capsys, *base)
    assert code == 0, err
    assert out.startswith("audit: intact (") and out.endswith(" 2 signatures)\n")
    code, out, _ = run_cli(capsys, *base, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["intact"] is True and doc["first_break"] is None
    assert doc["signatures"] == 2 and doc["audit_rows"] > doc["session_entries"] > 0
    with populated.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_update")
        conn.exec_driver_sql(
            "UPDATE audit_entry SET station = 'elsewhere' "
            "WHERE id = (SELECT max(id) FROM audit_entry)"
        )
        last = conn.execute(text("SELECT max(id) FROM audit_entry")).scalar()
    code, out, _ = run_cli(capsys, *base)
    assert code == 1
    assert out == f"audit: BROKEN at audit_entry {last}: entry_hash does not match its content\n"
    code, out, _ = run_cli(capsys, *base, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["intact"] is False
    assert doc["first_break"]["table"] == "audit_entry" and doc["first_break"]["id"] == last
    # expected problems: one line, exit 2
    missing = tmp_path / "nowhere" / "none.sqlite3"
    code, out, err = run_cli(
        capsys, "--data-dir", str(tmp_path / "d"), "--db", f"sqlite:///{missing}"
    )
    assert code == 2 and out == "" and err.startswith("ketamon: error: ") and err.count("\n") == 1
    assert not missing.exists()
    code, _, err = run_cli(capsys, "--data-dir", str(tmp_path / "d"), "--db", "mysql://x/y")
    assert code == 2 and err.startswith("ketamon: error: ")
