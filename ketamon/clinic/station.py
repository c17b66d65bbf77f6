"""A headless station (``ketamon station``): a station's chairs with no window.

Each chair runs what a chair runs in the app: the Qt-free :class:`ChairPipeline` (supervisor,
protocol, alarm engine, buffers), the session core (:class:`ChairCore`, its flags and link events
recorded through the repository), the prompt schedule, and the one :class:`DatabaseWriter` for
the readings. A chair with a session left open (by this station, or by a GUI station that handed
the chair over by closing) resumes it; otherwise a recording session is started for it, as
``ketamon record`` does.

Around them the station registers in the clinic (:mod:`ketamon.clinic.registry`), sends a
heartbeat every 2 s (with its clock's offset from the server's), and publishes each chair's
session, link and next item due when they change. While the database cannot be reached the
chairs keep acquiring and alarming locally: readings are held by the writer and retried in order,
flags and link events wait in each chair's command queue (in order); past 30 s, and at a stop,
both go to the durable spool (:mod:`ketamon.storage.spool`), replayed in order and idempotently
when the server is back or at the next start. Every chair shows the technical flag "clinic
database unreachable — recording locally" until the server is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.readings import Reading
from devices.supervisor import StatusEvent
from devices.transports import Transport
from ketamon.acquisition.pipeline import ChairPipeline, MonitorSpec
from ketamon.clinic import registry
from ketamon.config import ChairConfig
from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.ports import AuthFailed
from ketamon.core.session import ChairCore, CoreSettings
from ketamon.domain.alarms import AlarmEvent
from ketamon.domain.prompts import PromptConfig, Recorded, next_due, prompts
from ketamon.domain.record import EntryKind, PatientInfo, Plan, SessionState
from ketamon.domain.roles import Actor
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.session_rules import Treatment
from ketamon.domain.site import SiteProfile
from ketamon.domain.sources import SourceSelector
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.services import build_monitor, open_database, resume_session
from ketamon.storage.database import short_error
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.spool import EntryRetrier, Spool, replay_spool, spool_path_for
from ketamon.storage.users import system_user_id
from ketamon.storage.writer import DatabaseWriter

log = logging.getLogger(__name__)

TECH_CLINIC_DB = "tech_clinic_db"
CLINIC_DB_MESSAGE = "clinic database unreachable — recording locally"
TECH_SERVER_CLOCK = "tech_server_clock"
#: the database counts as unreachable once a write or heartbeat has failed for this long
UNREACHABLE_AFTER_S = 3.0


class _NobodySignsIn:
    """A headless station has no one to sign in: nothing it does needs a signature."""

    def verify(self, username: str, password: str) -> Actor:
        raise AuthFailed("nobody can sign in at a headless station")


@dataclass(frozen=True)
class StationSettings:
    name: str
    database_url: str
    chairs: tuple[ChairConfig, ...]
    profile: ThresholdProfile
    site: SiteProfile = field(default_factory=SiteProfile)
    heartbeat_s: float = registry.HEARTBEAT_S
    tick_s: float = 1.0
    #: where the durable spool lives (issue 11): readings held past 30 s, and at a stop while
    #: the database is away, go there and are replayed in order, idempotently
    spool_dir: Path | None = None


class HeadlessChair:
    """One chair: its pipeline (own thread), its session core, and an ordered command queue
    (flags and link events), retried in order while the database is away."""

    def __init__(self, station: HeadlessStation, chair: ChairConfig) -> None:
        self.station = station
        self.config = chair
        self.name = chair.name
        st, site = station.settings, station.settings.site
        clock = station.clock

        def make() -> tuple[Transport, DeviceProtocol]:
            m = build_monitor(chair, clock)
            return m.transport, m.protocol

        desc = chair.protocol
        if chair.protocol == "simulator":
            desc = f"simulator ({chair.scenario})"
        self.pipeline = ChairPipeline(
            chair.name,
            MonitorSpec(make=make, description=desc),
            st.profile,
            clock=clock,
            link_low_after_s=site.link_lost_low_s,
            link_medium_after_s=site.link_lost_medium_s,
        )
        self.pipeline.alarms.latch_high = site.latch_high
        self.pipeline.sources = SourceSelector(site.primary_sources)
        assert station.repository is not None
        self.core = ChairCore(
            chair.name,
            station.repository,
            _NobodySignsIn(),
            st.profile,
            clock.now,
            alarms=EngineAlarms(
                self.pipeline.alarms,
                clock.now,
                self.pipeline.alarm_lock,
                acknowledged=self.pipeline.acknowledged,
            ),
            settings=CoreSettings(
                min_observation_min=site.min_observation_min,
                site={"name": site.name, **site.settings()},
            ),
        )
        self.prompt_config: PromptConfig = site.prompt_config()
        self.commands: queue.Queue[tuple[c.Command, datetime | None] | None] = queue.Queue()
        self.retrier: EntryRetrier | None = None
        self.pending_commands = 0
        self._published: tuple[object, ...] | None = None
        self._threads: list[threading.Thread] = []

    @property
    def session_id(self) -> int | None:
        s = self.core.state
        return None if s is None else s.session_id

    # ---- start -------------------------------------------------------------------------------
    def open_session(self) -> str:
        """Resume the chair's open session, or start a recording session; says which."""
        station = self.station
        assert station.repository is not None and station.writer is not None
        mine = [o for o in station.repository.open_sessions() if o.chair == self.name]
        if mine:
            sid = mine[-1].session_id
            state = self.core.resume(sid)
            station.writer.call(
                lambda s: resume_session(s, sid, why=f"station {station.settings.name} resumed")
            )
            self.pipeline.set_first_dose(state.first_dose)
            self._retrier()
            return f"resumed session {sid}"
        self.core.execute(
            c.StartSession(
                PatientInfo(None, "UNIDENTIFIED", "Unidentified", "Patient"),
                Plan(Treatment.OTHER),
                device=self.config.protocol,
            ),
            station.system,
        )
        self._retrier()
        return f"started session {self.session_id}"

    def _retrier(self) -> None:
        spool, sid = self.station.spool, self.session_id
        if spool is not None and sid is not None:
            self.retrier = EntryRetrier(spool, sid)

    def start(self) -> None:
        p = self.pipeline
        p.on_readings, p.on_link, p.on_alarm = self._readings, self._link, self._alarm
        for target, name in ((self._run, "acq"), (self._record_loop, "cmd")):
            t = threading.Thread(target=target, name=f"{name}-{self.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except Exception:
            log.exception("station: chair %s: acquisition stopped", self.name)

    # ---- the pipeline's callbacks (its thread) ----------------------------------------------
    def _readings(self, readings: Sequence[Reading]) -> None:
        sid = self.session_id
        writer = self.station.writer
        if sid is not None and writer is not None:
            writer.submit_readings(sid, readings)

    def _link(self, e: StatusEvent) -> None:
        self.record(c.RecordLink(e.state.value, e.reason), e.time)

    def _alarm(self, e: AlarmEvent) -> None:
        self.record(c.RecordAlarmEvents([e]))

    # ---- the command queue -------------------------------------------------------------------
    def record(self, cmd: c.Command, at: datetime | None = None) -> None:
        self.pending_commands += 1
        self.commands.put((cmd, at))

    def _record_loop(self) -> None:
        """Flags and link events in order; while the database is away each is retried (and
        the station shows it unreachable); at a stop they go to the durable spool."""
        station = self.station
        while True:
            item = self.commands.get()
            if item is None:
                return
            cmd, at = item

            def execute(cmd: c.Command = cmd) -> None:
                try:
                    self.core.execute(cmd, station.system)
                except Exception as exc:
                    station.write_failed(short_error(exc))
                    raise

            retrier = self.retrier
            if retrier is None:
                try:
                    execute()
                except Exception:
                    log.exception("station: %s: could not record %s", self.name, cmd)
            else:
                retrier.session_id = self.session_id or retrier.session_id
                retrier.run(execute, cmd, at)
            self.pending_commands -= 1

    # ---- the once-a-second tick -------------------------------------------------------------
    def tick(self, db_down: bool, clock_flag: tuple[Priority | None, str]) -> None:
        state = self.core.state
        p = self.pipeline
        p.set_condition(
            TECH_CLINIC_DB,
            Priority.MEDIUM if db_down else None,
            CLINIC_DB_MESSAGE if db_down else "",
            technical=True,
        )
        p.set_condition(TECH_SERVER_CLOCK, clock_flag[0], clock_flag[1], technical=True)
        p.tick(
            session_active=state is not None,
            first_dose=None if state is None else state.first_dose,
            nibp_interval_min=self.station.settings.site.vitals_interval_min,
        )

    def next_due(self, now: datetime) -> tuple[str, datetime | None]:
        s = self.core.state
        if s is None:
            return "", None
        clock = SessionClock(s.started, s.first_dose)
        p = next_due(prompts(clock, now, self._recorded(s, clock), self.prompt_config))
        if p is None:
            return "nothing due", None
        suffix = {"overdue": " — OVERDUE", "due": " — due now"}.get(p.state.value, "")
        return p.label + suffix, clock.zero + timedelta(minutes=p.due_min)

    def _recorded(self, s: SessionState, clock: SessionClock) -> Recorded:
        series = self.pipeline.buffers.series("nibp_sys")
        start, zero = s.started.timestamp(), clock.zero.timestamp()
        bp = [] if series is None else [(t - zero) / 60.0 for t in series.t if t >= start]
        bp += [clock.minutes(v.at) for v in s.vitals if "nibp_sys" in v.values]
        return Recorded(
            bp=sorted(bp),
            moaas=[clock.minutes(o.at) for o in s.live(EntryKind.MOAAS)]
            + [clock.minutes(o.at) for o in s.live(EntryKind.RASS)],
            cadss=[clock.minutes(o.at) for o in s.live(EntryKind.CADSS)],
            bp40_reason=bool(s.bp40_reason),
        )

    def publish(self, now: datetime) -> None:
        """The chair's row in the clinic, when something a central view shows has changed."""
        text, at = self.next_due(now)
        link = self.pipeline.link_state.value
        if self.pipeline.link_reason:
            link += f": {self.pipeline.link_reason}"
        key = (self.session_id, link, text)
        if key == self._published:
            return
        station_id = self.station.station_id
        assert station_id is not None
        registry.update_chair(
            self.station.engine_or_fail(),
            station_id,
            self.name,
            session_id=self.session_id,
            link=link,
            next_due=text,
            next_due_at=at,
        )
        self._published = key

    def stop(self) -> None:
        self.pipeline.stop()

    def join(self, timeout: float) -> None:
        if self.retrier is not None:  # stopping: what the database cannot take now is spooled
            self.retrier.deadline = time.monotonic() + 2.0
        self.commands.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))


class HeadlessStation:
    """The chairs of one station, registered in the clinic, with no window."""

    def __init__(
        self,
        settings: StationSettings,
        *,
        clock: Clock | None = None,
        log_line: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.say = log_line or (lambda text: log.info("%s", text))
        self.writer: DatabaseWriter | None = None
        self.repository: SqlSessionRepository | None = None
        self.station_id: int | None = None
        self.spool: Spool | None = None
        self.chairs: list[HeadlessChair] = []
        self.system: Actor
        self.stopping = threading.Event()
        self.last_heartbeat: registry.Heartbeat | None = None
        #: readings the writer committed (final after :meth:`stop`)
        self.readings_committed = 0
        self._failing_since: float | None = None
        self._last_ok = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ---- open, run, stop ----------------------------------------------------------------------
    def open(self) -> None:
        st = self.settings
        engine = open_database(st.database_url)
        try:
            self.station_id = registry.register(
                engine, st.name, [ch.name for ch in st.chairs], station_clock=self.clock.now
            )
            if st.spool_dir is not None:
                self.spool = Spool(spool_path_for(st.database_url, st.spool_dir))
                if self.spool.exists():  # what an earlier stop could not store, first
                    self.say(f"station {st.name}: {replay_spool(self.spool, engine).summary()}")
            self.writer = DatabaseWriter(
                engine, user_id=system_user_id(engine), spool=self.spool
            ).start()
            self.repository = SqlSessionRepository(
                engine, self.writer, profile=st.profile, profile_origin=f"station {st.name}"
            )
            self.system = self.repository.system_actor()
            for ch in st.chairs:
                chair = HeadlessChair(self, ch)
                self.say(f"station {st.name}: {ch.name}: {chair.open_session()}")
                self.chairs.append(chair)
        except BaseException:
            if self.writer is not None:
                self.writer.stop()
            engine.dispose()
            raise

    def engine_or_fail(self) -> Engine:
        assert self.writer is not None
        return self.writer.engine

    def start(self) -> None:
        for ch in self.chairs:
            ch.start()
        for target, name in ((self._tick_loop, "tick"), (self._heartbeat_loop, "heartbeat")):
            t = threading.Thread(target=target, name=f"station-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def run(self, max_seconds: float | None = None) -> None:
        """Start, then block until :meth:`request_stop` (or ``max_seconds``), then stop."""
        self.start()
        self.stopping.wait(max_seconds)
        self.stop()

    def request_stop(self) -> None:
        self.stopping.set()

    def stop(self, join_s: float = 10.0) -> None:
        self.stopping.set()
        for ch in self.chairs:
            ch.stop()
        for t in self._threads:
            t.join(5.0)
        for ch in self.chairs:
            ch.join(join_s)
        writer = self.writer
        if writer is None:
            return
        writer.wait_idle(join_s)
        if self.station_id is not None and not self.db_down:
            try:
                registry.stopped(writer.engine, self.station_id)
            except Exception as exc:
                log.warning("station: could not mark the station stopped: %s", short_error(exc))
        writer.stop()
        self.readings_committed = writer.stats.readings_committed
        writer.engine.dispose()
        self.writer = None

    # ---- the database's health --------------------------------------------------------------
    def write_failed(self, why: str) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("station %s: database write failed: %s", self.settings.name, why)

    def _write_ok(self) -> None:
        with self._lock:
            self._failing_since = None
            self._last_ok = time.monotonic()

    @property
    def db_down(self) -> bool:
        with self._lock:
            since = self._failing_since
        writer = self.writer
        if writer is not None and writer.failing:
            return True
        return since is not None and time.monotonic() - since >= UNREACHABLE_AFTER_S

    def unsaved(self) -> int:
        """Readings and entries waiting for the database (held in memory, in order)."""
        writer = self.writer
        held = 0 if writer is None else writer.unsaved()
        return held + sum(ch.pending_commands for ch in self.chairs)

    # ---- the loops ---------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        assert self.station_id is not None and self.writer is not None
        engine = self.writer.engine
        while not self.stopping.wait(self.settings.heartbeat_s):
            try:
                self.last_heartbeat = registry.heartbeat(
                    engine, self.station_id, spooled=self.unsaved(), station_clock=self.clock.now
                )
            except Exception as exc:
                self.write_failed(short_error(exc))
                continue
            self._write_ok()

    def _clock_flag(self) -> tuple[Priority | None, str]:
        hb = self.last_heartbeat
        if hb is None or not hb.clock_off:
            return None, ""
        return (
            Priority.LOW,
            f"station clock {hb.offset_s:+.1f} s off the clinic server "
            f"(> {registry.CLOCK_TOLERANCE_S:g} s): times may disagree",
        )

    def _tick_loop(self) -> None:
        while not self.stopping.wait(self.settings.tick_s):
            down = self.db_down
            flag = self._clock_flag()
            now = self.clock.now()
            for ch in self.chairs:
                try:
                    ch.tick(down, flag)
                except Exception:
                    log.exception("station: chair %s: tick failed", ch.name)
                if down:
                    continue
                try:
                    ch.publish(now)
                except Exception as exc:
                    self.write_failed(short_error(exc))
