"""Stations, their chairs and heartbeats in the clinic's database.

A station registers once at start (:func:`register`), then sends a heartbeat every
:data:`HEARTBEAT_S` seconds (:func:`heartbeat`). Each heartbeat measures the station clock's
offset from the server's (station minus server, the round trip halved). A central view shows a
station whose last heartbeat is older than :data:`OFFLINE_AFTER_S` as offline, and one whose
clock is more than :data:`CLOCK_TOLERANCE_S` off as a clock problem.

Every change published to central views travels by database triggers (``NOTIFY`` at commit, on
:data:`CHANNEL`); this module only writes the rows.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session

from ketamon import __version__
from ketamon.storage.models import Station, StationChair

#: the LISTEN/NOTIFY channel (the triggers of migration 0007 publish on it)
CHANNEL = "ketamon_clinic"
HEARTBEAT_S = 2.0
#: a station silent this long is "station offline" (a technical alarm at the central view)
OFFLINE_AFTER_S = 10.0
#: a station clock further than this from the server's is flagged
CLOCK_TOLERANCE_S = 5.0


class ClinicError(ValueError):
    """A station cannot take its place in the clinic (the message says why)."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    server_time: datetime
    station_time: datetime
    offset_s: float  # station clock minus server clock
    round_trip_s: float

    @property
    def clock_off(self) -> bool:
        return abs(self.offset_s) > CLOCK_TOLERANCE_S


def _utcnow() -> datetime:
    return datetime.now(UTC)


def server_now(s: Session) -> datetime:
    """The server's clock (PostgreSQL ``clock_timestamp()``; SQLite: this PC is the server)."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.execute(text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return _utcnow()


def measure_offset(s: Session, station_clock: Callable[[], datetime] = _utcnow) -> Heartbeat:
    t0, m0 = station_clock(), time.monotonic()
    server = server_now(s)
    rtt = time.monotonic() - m0
    mid = t0 + timedelta(seconds=rtt / 2.0)
    return Heartbeat(server, mid, (mid - server).total_seconds(), rtt)


def register(
    engine: Engine,
    name: str,
    chairs: Sequence[str],
    *,
    kind: str = "headless",
    station_clock: Callable[[], datetime] = _utcnow,
) -> int:
    """Register (or re-register) station ``name`` with its chairs; returns its id.

    A chair run by another station that is still alive (heartbeat within
    :data:`OFFLINE_AFTER_S`) is refused: chair names are the clinic's, one station each."""
    if not name.strip() or len(name) > 64:
        raise ClinicError(f"station name must be 1-64 characters, got {name!r}")
    with Session(engine, expire_on_commit=False) as s, s.begin():
        hb = measure_offset(s, station_clock)
        row = s.scalars(select(Station).where(Station.name == name).with_for_update()).first()
        if row is None:
            row = Station(name=name, started_at=hb.station_time)
            s.add(row)
        row.hostname = socket.gethostname()[:200]
        row.pid = os.getpid()
        row.kind = kind
        row.version = __version__[:32]
        row.state = "running"
        row.started_at = hb.station_time
        row.heartbeat_at = hb.server_time
        row.station_time = hb.station_time
        row.clock_offset_s = hb.offset_s
        row.spooled = 0
        s.flush()
        station_id = row.id
        for chair in chairs:
            cur = s.get(StationChair, chair, with_for_update=True)
            if cur is not None and cur.station_id != station_id:
                other = s.get(Station, cur.station_id)
                alive = (
                    other is not None
                    and other.state == "running"
                    and (hb.server_time - other.heartbeat_at).total_seconds() < OFFLINE_AFTER_S
                )
                if alive:
                    assert other is not None
                    raise ClinicError(
                        f"chair {chair!r} is run by station {other.name!r} "
                        f"on {other.hostname or 'an unknown host'}; stop it there first"
                    )
            if cur is None:
                cur = StationChair(chair=chair, station_id=station_id, updated_at=hb.server_time)
                s.add(cur)
            cur.station_id = station_id
            cur.link = ""
            cur.next_due = ""
            cur.next_due_at = None
            cur.updated_at = hb.server_time
        # chairs this station ran before and no longer has
        s.execute(
            delete(StationChair).where(
                StationChair.station_id == station_id, StationChair.chair.not_in(list(chairs))
            )
        )
        return station_id


def heartbeat(
    engine: Engine,
    station_id: int,
    *,
    spooled: int = 0,
    station_clock: Callable[[], datetime] = _utcnow,
) -> Heartbeat:
    """Say this station is alive; returns the clock offset measured on the way."""
    with Session(engine) as s, s.begin():
        hb = measure_offset(s, station_clock)
        row = s.get(Station, station_id)
        if row is None:
            raise ClinicError(f"station {station_id} is not registered (was it removed?)")
        row.heartbeat_at = hb.server_time
        row.station_time = hb.station_time
        row.clock_offset_s = hb.offset_s
        row.spooled = spooled
        row.state = "running"
        return hb


def update_chair(
    engine: Engine,
    station_id: int,
    chair: str,
    *,
    session_id: int | None,
    link: str,
    next_due: str,
    next_due_at: datetime | None = None,
) -> None:
    """The chair's session, link and next item due, as the station sees them now (a commit
    here is published to central views)."""
    with Session(engine) as s, s.begin():
        row = s.get(StationChair, chair)
        if row is None:
            row = StationChair(chair=chair, station_id=station_id)
            s.add(row)
        row.station_id = station_id
        row.session_id = session_id
        row.link = link[:200]
        row.next_due = next_due[:200]
        row.next_due_at = next_due_at
        row.updated_at = server_now(s)


def stopped(engine: Engine, station_id: int) -> None:
    """A deliberate stop: the station is shown as stopped, not as failed."""
    with Session(engine) as s, s.begin():
        row = s.get(Station, station_id)
        if row is not None:
            row.state = "stopped"
            row.heartbeat_at = server_now(s)
