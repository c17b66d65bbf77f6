"""What a central view shows, kept current in its own thread (no Qt).

:class:`CentralFeed` listens on ``ketamon_clinic`` (one psycopg 3 connection in autocommit) and,
on each notification (a flag raised, acknowledged or cleared, a phase change, an entry, a chair's
row) re-folds the sessions it names from their record; once a second it also reads the new
readings (by id, with a margin for transactions that commit out of id order), the stations'
heartbeats and the chairs' rows. Each pass publishes an immutable :class:`ClinicSnapshot`
(:attr:`CentralFeed.snapshot`, with a :attr:`~CentralFeed.version` to poll): the UI thread never
waits on the database.

Time at the central view is the server's: ages are measured from the server's clock, and a
station's readings are put on it through the station's measured clock offset. A station whose
heartbeat is older than :data:`~ketamon.clinic.registry.OFFLINE_AFTER_S` is a technical alarm,
"station offline", on the station and on each of its chairs (IEC 60601-1-8: a distributed alarm
system announces its own failure). When the database goes away the feed says so, keeps the last
picture (marked as such), and reconnects and re-subscribes by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from devices.readings import Quality, Reading
from ketamon.acquisition.buffers import TrendBuffers
from ketamon.clinic.registry import CHANNEL, CLOCK_TOLERANCE_S, OFFLINE_AFTER_S
from ketamon.core.read_models import chair_summary
from ketamon.domain.record import SessionState, fold
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.thresholds import Priority
from ketamon.storage.database import make_engine, short_error
from ketamon.storage.repository import SqlSessionRepository

log = logging.getLogger(__name__)

TREND_S = 30 * 60.0
#: readings are read by id; a transaction may commit after one with a higher id: re-read this
#: many ids back (at 64 chairs x 5 readings/s, ~15 s of lag) and skip those already seen
ID_MARGIN = 5000
POLL_S = 1.0
VITALS = (("nibp_sys", "BP"), ("hr", "HR"), ("spo2", "SpO₂"), ("rr", "RR"))


@dataclass(frozen=True, slots=True)
class Flag:
    priority: Priority
    text: str
    acknowledged: bool = False
    technical: bool = False


@dataclass(frozen=True, slots=True)
class Vital:
    label: str
    text: str  # "120/80", "--"
    age_s: float | None


@dataclass(frozen=True, slots=True)
class StationView:
    id: int
    name: str
    hostname: str
    state: str  # running | stopped
    heartbeat_age_s: float
    clock_offset_s: float
    spooled: int

    @property
    def offline(self) -> bool:
        return self.state == "running" and self.heartbeat_age_s > OFFLINE_AFTER_S

    @property
    def clock_off(self) -> bool:
        return abs(self.clock_offset_s) > CLOCK_TOLERANCE_S

    def flags(self) -> list[Flag]:
        out = []
        if self.offline:
            out.append(
                Flag(
                    Priority.MEDIUM,
                    f"station {self.name} offline (no heartbeat for {self.heartbeat_age_s:.0f} s)",
                    technical=True,
                )
            )
        elif self.state == "stopped":
            out.append(Flag(Priority.LOW, f"station {self.name} stopped", technical=True))
        if self.clock_off:
            out.append(
                Flag(
                    Priority.LOW,
                    f"station {self.name} clock {self.clock_offset_s:+.1f} s off the server",
                    technical=True,
                )
            )
        return out


@dataclass(frozen=True)
class ChairView:
    station: str
    chair: str
    session_id: int
    patient: str
    phase: str
    time: str  # "T+42 min" or "pre-dose"
    minutes_since_dose: float | None
    countdown: str  # "2 h in 78 min", "2 h complete", ""
    vitals: tuple[Vital, ...]
    next_due: str
    link: str
    flags: tuple[Flag, ...]  # worst first; technical station flags included
    trend: TrendBuffers = field(compare=False, repr=False)
    station_offline: bool = False

    @property
    def worst(self) -> Flag | None:
        return self.flags[0] if self.flags else None


@dataclass(frozen=True)
class ClinicSnapshot:
    connected: bool
    error: str
    server_time: datetime | None
    chairs: tuple[ChairView, ...] = ()
    stations: tuple[StationView, ...] = ()

    @property
    def offline_stations(self) -> list[StationView]:
        return [s for s in self.stations if s.offline]


def _flag_order(f: Flag) -> tuple[int, int]:
    return (-int(f.priority), 1 if f.acknowledged else 0)


def _alarm_flags(state: SessionState) -> list[Flag]:
    out = []
    for a in state.alarms.values():
        try:
            prio = Priority[a.priority.upper()]
        except KeyError:
            continue
        out.append(
            Flag(prio, f"{prio.marker} {a.message.lstrip('* ')}", a.acknowledged, a.technical)
        )
    return out


class _Session:
    """What the feed keeps for one open session."""

    def __init__(self, session_id: int) -> None:
        self.id = session_id
        self.state: SessionState | None = None
        self.trend = TrendBuffers(capacity=4 * 3600)
        self.dirty = True
        self.loaded_history = False


class CentralFeed:
    """The clinic for a central view, kept current in a thread (see the module docstring)."""

    def __init__(self, database_url: str, *, poll_s: float = POLL_S) -> None:
        self.database_url = database_url
        self.poll_s = poll_s
        self._snapshot = ClinicSnapshot(False, "connecting", None)
        self.version = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sessions: dict[int, _Session] = {}
        self._last_id = 0
        self._seen: deque[int] = deque()
        self._seen_set: set[int] = set()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        #: notifications heard (total), reconnections made
        self.notifications = 0
        self.connections = 0
        self.reconnects = 0
        #: (alarm_event id, wall time the snapshot showing it was published) for latency
        self.flag_published: deque[tuple[int, float]] = deque(maxlen=10_000)
        self._pending_alarm_ids: list[int] = []

    # ---- for the UI (any thread) ------------------------------------------------------------
    @property
    def snapshot(self) -> ClinicSnapshot:
        with self._lock:
            return self._snapshot

    def session_trend(self, session_id: int) -> TrendBuffers | None:
        """The buffers of an open session (the read-only live chart draws from them)."""
        s = self._sessions.get(session_id)
        return None if s is None else s.trend

    def session_state(self, session_id: int) -> SessionState | None:
        s = self._sessions.get(session_id)
        return None if s is None else s.state

    # ---- the thread -------------------------------------------------------------------------
    def start(self) -> CentralFeed:
        self._thread = threading.Thread(target=self._run, name="central-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
        self._thread = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _publish(self, snap: ClinicSnapshot) -> None:
        with self._lock:
            self._snapshot = snap
            self.version += 1
        now = time.time()
        for aid in self._pending_alarm_ids:
            self.flag_published.append((aid, now))
        self._pending_alarm_ids = []

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._session_loop()
                delay = 0.5
            except Exception as exc:  # the server went away (or is not there yet)
                why = short_error(exc)
                log.warning("central: database unreachable: %s", why)
                old = self.snapshot
                self._publish(replace(old, connected=False, error=why))
                if self._engine is not None:
                    self._engine.dispose()
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 2.0)

    def _listen_connection(self) -> psycopg.Connection[Any]:
        u = make_url(self.database_url)
        conn = psycopg.connect(
            host=u.host or None,
            port=u.port or None,
            dbname=u.database or None,
            user=u.username or None,
            password=u.password or None,
            autocommit=True,
            connect_timeout=5,
            application_name="ketamon central",
        )
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _session_loop(self) -> None:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        listen = self._listen_connection()
        try:
            # Subscribed first, then read everything: nothing committed in between is missed.
            for s in self._sessions.values():
                s.dirty = True
            self._refresh()
            self.connections += 1
            self.reconnects = self.connections - 1
            next_poll = time.monotonic() + self.poll_s
            while not self._stop.is_set():
                left = max(0.0, next_poll - time.monotonic())
                heard = False
                for n in listen.notifies(timeout=min(left, 0.2), stop_after=1):
                    heard = True
                    self._note(n.payload)
                if heard:
                    # take what else arrived with it, then show it at once
                    for n in listen.notifies(timeout=0.01):
                        self._note(n.payload)
                    self._refresh(readings=False)
                if time.monotonic() >= next_poll:
                    self._refresh()
                    next_poll = time.monotonic() + self.poll_s
                if listen.closed or listen.broken:
                    raise psycopg.OperationalError("the listening connection was closed")
        finally:
            listen.close()

    def _note(self, payload: str) -> None:
        import json

        self.notifications += 1
        try:
            d = json.loads(payload)
        except ValueError:
            return
        sid = d.get("session")
        if isinstance(sid, int):
            s = self._sessions.get(sid)
            if s is None:
                s = self._sessions[sid] = _Session(sid)
            s.dirty = True
        if d.get("kind") == "alarm" and isinstance(d.get("id"), int):
            self._pending_alarm_ids.append(int(d["id"]))

    # ---- reading the database ---------------------------------------------------------------
    def _refresh(self, *, readings: bool = True) -> None:
        engine = self._engine
        assert engine is not None
        with engine.connect() as conn:
            server_now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            server_now = server_now.astimezone(UTC)
            stations = {
                r.id: StationView(
                    r.id,
                    r.name,
                    r.hostname,
                    r.state,
                    max(0.0, (server_now - r.heartbeat_at).total_seconds()),
                    float(r.clock_offset_s),
                    int(r.spooled),
                )
                for r in conn.execute(
                    text(
                        "SELECT id, name, hostname, state, heartbeat_at, clock_offset_s, spooled "
                        "FROM station ORDER BY name"
                    )
                )
            }
            rows = conn.execute(
                text(
                    "SELECT ts.id, ts.chair, sc.station_id, sc.link, sc.next_due "
                    "FROM treatment_session ts LEFT JOIN station_chair sc ON sc.chair = ts.chair "
                    "WHERE ts.ended_at IS NULL ORDER BY ts.chair, ts.id"
                )
            ).all()
        open_ids = {r.id for r in rows}
        for sid in list(self._sessions):
            if sid not in open_ids:
                del self._sessions[sid]
        for r in rows:
            if r.id not in self._sessions:
                self._sessions[r.id] = _Session(r.id)
        repo = SqlSessionRepository(engine)
        for s in self._sessions.values():
            if s.dirty:
                s.state = fold(repo.load(s.id))
                s.dirty = False
        if readings:
            self._read_readings(engine, server_now)
        chairs = []
        offsets = {st.id: st.clock_offset_s for st in stations.values()}
        for r in rows:
            s = self._sessions[r.id]
            st = stations.get(r.station_id) if r.station_id is not None else None
            chairs.append(
                self._chair_view(
                    s, st, r.chair, r.link or "", r.next_due or "", server_now, offsets
                )
            )
        self._publish(
            ClinicSnapshot(True, "", server_now, tuple(chairs), tuple(stations.values()))
        )

    def _read_readings(self, engine: Engine, server_now: datetime) -> None:
        new = [s for s in self._sessions.values() if not s.loaded_history]
        cols = "id, session_id, parameter, value, unit, host_time, quality, source"
        with engine.connect() as conn:
            if self._last_id == 0:
                self._last_id = int(
                    conn.execute(text("SELECT coalesce(max(id), 0) FROM vital_reading")).scalar()
                    or 0
                )
            for s in new:  # the last 30 minutes of a session seen for the first time
                since = server_now - timedelta(seconds=TREND_S + 300)
                got = conn.execute(
                    text(
                        f"SELECT {cols} FROM vital_reading WHERE session_id = :sid "
                        "AND host_time >= :since AND id <= :last ORDER BY host_time"
                    ),
                    {"sid": s.id, "since": since, "last": self._last_id},
                ).all()
                self._extend(got, remember=False)
                s.loaded_history = True
            ids = list(self._sessions)
            if not ids:
                return
            got = conn.execute(
                text(
                    f"SELECT {cols} FROM vital_reading WHERE id > :low "
                    "AND session_id = ANY(:ids) ORDER BY id"
                ),
                {"low": max(0, self._last_id - ID_MARGIN), "ids": ids},
            ).all()
        fresh = [r for r in got if r.id not in self._seen_set]
        self._extend(fresh, remember=True)
        if got:
            self._last_id = max(self._last_id, int(got[-1].id))
        low = self._last_id - ID_MARGIN
        while self._seen and self._seen[0] < low:
            self._seen_set.discard(self._seen.popleft())

    def _extend(self, rows: Iterable[Any], *, remember: bool) -> None:
        by_session: dict[int, list[Reading]] = {}
        for r in rows:
            if remember:
                self._seen.append(int(r.id))
                self._seen_set.add(int(r.id))
            by_session.setdefault(r.session_id, []).append(
                Reading(
                    parameter=r.parameter,
                    value=float(r.value),
                    unit=r.unit,
                    host_time=r.host_time.astimezone(UTC),
                    quality=Quality(int(r.quality)),
                    source=r.source,
                )
            )
        for sid, readings in by_session.items():
            s = self._sessions.get(sid)
            if s is not None:
                readings.sort(key=lambda x: x.host_time)
                s.trend.extend(readings)

    def _chair_view(
        self,
        s: _Session,
        st: StationView | None,
        chair: str,
        link: str,
        next_due: str,
        now: datetime,
        offsets: dict[int, float],
    ) -> ChairView:
        state = s.state
        offset = 0.0 if st is None else offsets.get(st.id, 0.0)
        flags = [] if state is None else _alarm_flags(state)
        if st is not None:
            flags += st.flags()
        flags.sort(key=_flag_order)
        if state is None:
            return ChairView(
                "" if st is None else st.name,
                chair,
                s.id,
                "",
                "",
                "",
                None,
                "",
                (),
                next_due,
                link,
                tuple(flags),
                s.trend,
                st is not None and st.offline,
            )
        # the station's times on the server's clock (its offset measured at each heartbeat)
        station_now = now + timedelta(seconds=offset)
        summary = chair_summary(chair, state, state, station_now, None, None, link)
        countdown = ""
        if state.first_dose is not None:
            left = SessionClock(state.started, state.first_dose).observation_remaining_min(
                station_now
            )
            countdown = f"2 h in {left:.0f} min" if left and left > 0 else "2 h complete"
        latest = s.trend.latest()
        vitals = []
        for key, label in VITALS:
            got = latest.get(key)
            if got is None:
                vitals.append(Vital(label, "--", None))
                continue
            r = got[0]
            value = f"{r.value:.0f}"
            if key == "nibp_sys" and "nibp_dia" in latest:
                value += f"/{latest['nibp_dia'][0].value:.0f}"
            vitals.append(Vital(label, value, (station_now - r.host_time).total_seconds()))
        return ChairView(
            station="" if st is None else st.name,
            chair=chair,
            session_id=s.id,
            patient=summary.patient,
            phase=summary.phase,
            time=summary.time,
            minutes_since_dose=summary.minutes_since_dose,
            countdown=countdown,
            vitals=tuple(vitals),
            next_due=next_due or "(not published by a station)",
            link=link,
            flags=tuple(flags),
            trend=s.trend,
            station_offline=st is not None and st.offline,
        )
