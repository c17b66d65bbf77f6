"""HL7 v2 out: results to the clinic's interface engine (Mirth and the like), store-and-forward.

Configured in the station's ``config.toml``::

    [hl7_out]
    host = "engine.clinic.lan"
    port = 6661
    sending_facility = "BAYCLINIC"
    # optional: receiving_application, receiving_facility, ack_timeout_s (10),
    # retry_first_s (2), retry_max_s (300), batch_max (500), poll_s (2)

:class:`Hl7OutSender` does one pass: it **scans** the database for readings and signatures not
yet queued (from ``hl7_out_cursor``; the first scan starts at what is there now, so enabling
the interface does not resend a clinic's history: ``ketamon hl7-out send`` queues an older
signed session), turns them into ORU^R01 messages (:mod:`ketamon.exports.hl7_oru`) and
**queues** them in ``hl7_outbox`` with their control ids and the cursor, in one transaction;
then it **delivers** the queue in order over MLLP, one message at a time, waiting for each ACK.
An ACK with AA (or CA) marks the message sent. AE or AR, no answer within ``ack_timeout_s``,
a refused connection, or a connection closed before the ACK keep the message queued with the
reason, and it is tried again after a back-off (doubling from ``retry_first_s`` up to
``retry_max_s``); the messages after it wait (results stay in order). A message resent after a
restart carries the control id it was queued with.

:class:`Hl7OutWorker` runs passes on a thread (no Qt): the app and ``ketamon record`` start one
with :func:`start_from_config` when ``[hl7_out]`` is configured; ``ketamon hl7-out run`` runs the
same loop on its own.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import hl7
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devices.protocols.hl7 import MllpDeframer, mllp_wrap
from devices.readings import Quality, Reading
from ketamon.config import ConfigError
from ketamon.domain.record import EntryKind, SessionState, fold
from ketamon.exports.hl7_oru import readings_oru, session_oru
from ketamon.storage import outbox
from ketamon.storage.history import session_readings
from ketamon.storage.models import SessionEntryRow, VitalReading
from ketamon.storage.repository import SqlSessionRepository

log = logging.getLogger(__name__)

READINGS_CURSOR = "readings"
ENTRIES_CURSOR = "entries"
SCAN_CHUNK = 5000


class Hl7OutConfigError(ConfigError):
    """The [hl7_out] table is wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Hl7OutSettings:
    host: str
    port: int
    sending_facility: str
    receiving_application: str = ""
    receiving_facility: str = ""
    ack_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    retry_first_s: float = 2.0
    retry_max_s: float = 300.0
    batch_max: int = 500
    poll_s: float = 2.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


_NUMBERS = {
    "ack_timeout_s": (0.1, 600.0),
    "connect_timeout_s": (0.1, 120.0),
    "retry_first_s": (0.01, 3600.0),
    "retry_max_s": (0.01, 86400.0),
    "poll_s": (0.01, 3600.0),
}


def parse_settings(raw: Mapping[str, Any], origin: str = "config") -> Hl7OutSettings:
    """Validate an ``[hl7_out]`` table; errors name ``origin`` and the key."""
    where = f"{origin}: [hl7_out]"
    known = {"host", "port", "sending_facility", "receiving_application", "receiving_facility"}
    known |= set(_NUMBERS) | {"batch_max"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise Hl7OutConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    host = raw.get("host")
    if not isinstance(host, str) or not host.strip():
        raise Hl7OutConfigError(f"{where}: 'host' must be a host name or address")
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise Hl7OutConfigError(f"{where}: 'port' must be a whole number 1-65535, got {port!r}")
    facility = raw.get("sending_facility")
    if not isinstance(facility, str) or not facility.strip():
        raise Hl7OutConfigError(f"{where}: 'sending_facility' must name the clinic (MSH-4)")
    values: dict[str, Any] = {}
    for key in ("receiving_application", "receiving_facility"):
        v = raw.get(key, "")
        if not isinstance(v, str):
            raise Hl7OutConfigError(f"{where}: {key!r} must be a string")
        values[key] = v
    for key, (lo, hi) in _NUMBERS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise Hl7OutConfigError(
                    f"{where}: {key!r} must be within {lo:g}-{hi:g}, got {v!r}"
                )
            values[key] = float(v)
    if "batch_max" in raw:
        v = raw["batch_max"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10000:
            raise Hl7OutConfigError(f"{where}: 'batch_max' must be 1-10000, got {v!r}")
        values["batch_max"] = v
    return Hl7OutSettings(
        host=host.strip(), port=port, sending_facility=facility.strip(), **values
    )


# ---- MLLP with an ACK ------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """The engine did not accept the message; the message says why (kept with the message)."""


@dataclass
class MllpLink:
    """One TCP connection to the engine, opened when needed and dropped after a failure."""

    settings: Hl7OutSettings
    sock: socket.socket | None = None
    deframer: MllpDeframer = field(default_factory=MllpDeframer)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self.deframer.reset()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            try:
                self.sock = socket.create_connection(
                    (self.settings.host, self.settings.port),
                    timeout=self.settings.connect_timeout_s,
                )
            except OSError as exc:
                raise DeliveryFailed(
                    f"cannot connect to {self.settings.where}: {exc.strerror or exc}"
                ) from exc
            self.deframer.reset()
        return self.sock

    def send(self, control_id: str, message: str) -> str:
        """Send one message and wait for its ACK; returns the ACK code (AA or CA)."""
        sock = self._connect()
        try:
            sock.settimeout(self.settings.ack_timeout_s)
            sock.sendall(mllp_wrap(message))
            while True:
                try:
                    data = sock.recv(65536)
                except TimeoutError as exc:
                    raise DeliveryFailed(
                        f"no ACK from {self.settings.where} within "
                        f"{self.settings.ack_timeout_s:g} s"
                    ) from exc
                if not data:
                    raise DeliveryFailed(
                        f"{self.settings.where} closed the connection before acknowledging"
                    )
                for event in self.deframer.feed(data):
                    if event.frame is None:
                        continue
                    code = _ack_code(event.frame, control_id)
                    if code is None:
                        continue  # an ACK for an earlier message (resent): keep waiting
                    return code
        except DeliveryFailed:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise DeliveryFailed(
                f"connection to {self.settings.where} failed: {exc.strerror or exc}"
            ) from exc


def _ack_code(frame: bytes, control_id: str) -> str | None:
    """The ACK's code when it answers ``control_id``; raises on AE/AR; None for another id."""
    text = frame.decode("utf-8", errors="replace").replace("\n", "\r")
    try:
        msg = hl7.parse(text)
        msa = msg.segment("MSA")
    except (KeyError, IndexError, ValueError) as exc:
        raise DeliveryFailed(f"the engine's answer is not an HL7 ACK: {text[:80]!r}") from exc
    code = str(msa[1]).strip()
    acked = str(msa[2]).strip() if len(msa) > 2 else ""
    if acked and acked != control_id:
        return None
    if code in ("AA", "CA"):
        return code
    detail = str(msa[3]).strip() if len(msa) > 3 else ""
    try:
        err = msg.segment("ERR")
        detail = detail or str(err[8] if len(err) > 8 else err)
    except KeyError:
        pass
    raise DeliveryFailed(f"the engine answered {code}" + (f": {detail}" if detail else ""))


# ---- the sender ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassReport:
    queued: int = 0
    sent: int = 0
    failed: str = ""  # why the first undelivered message was not delivered
    waiting: int = 0


class Hl7OutSender:
    def __init__(
        self,
        engine: Engine,
        settings: Hl7OutSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.link = MllpLink(settings)
        self._states: dict[int, SessionState] = {}

    def close(self) -> None:
        self.link.close()

    # ---- queueing -----------------------------------------------------------------------------
    def _state(self, session_id: int) -> SessionState | None:
        state = fold(SqlSessionRepository(self.engine).load(session_id))
        if state is not None:
            self._states[session_id] = state
        return state

    def _start_cursors(self) -> tuple[int, int]:
        readings = outbox.cursor(self.engine, READINGS_CURSOR)
        entries = outbox.cursor(self.engine, ENTRIES_CURSOR)
        if readings is None or entries is None:
            with Session(self.engine) as s:
                last_r = int(s.scalar(select(func.max(VitalReading.id))) or 0)
                last_e = int(s.scalar(select(func.max(SessionEntryRow.id))) or 0)
            outbox.enqueue(
                self.engine, [], cursor={READINGS_CURSOR: last_r, ENTRIES_CURSOR: last_e}
            )
            readings, entries = last_r, last_e
        return readings, entries

    def scan(self) -> int:
        """Queue a message per batch of new readings and per new signature; returns how many."""
        after_r, after_e = self._start_cursors()
        now = self.clock()
        total = 0
        while True:
            with Session(self.engine) as s:
                # the record's newest entry first: a signature committed meanwhile waits a pass
                last_e = int(s.scalar(select(func.max(SessionEntryRow.id))) or 0)
                rows = s.execute(
                    select(
                        VitalReading.id,
                        VitalReading.session_id,
                        VitalReading.parameter,
                        VitalReading.value,
                        VitalReading.unit,
                        VitalReading.mdc,
                        VitalReading.host_time,
                        VitalReading.quality,
                        VitalReading.source,
                    )
                    .where(VitalReading.id > after_r)
                    .order_by(VitalReading.id)
                    .limit(SCAN_CHUNK)
                ).all()
                sigs = s.execute(
                    select(SessionEntryRow.id, SessionEntryRow.session_id, SessionEntryRow.kind)
                    .where(SessionEntryRow.id > after_e, SessionEntryRow.id <= last_e)
                    .where(
                        SessionEntryRow.kind.in_(
                            [EntryKind.SIGNED.value, EntryKind.ADDENDUM.value]
                        )
                    )
                    .order_by(SessionEntryRow.id)
                ).all()
            messages: list[tuple[str, str, int, str]] = []
            for sid, group in groupby(rows, key=lambda r: r.session_id):
                batch = list(group)
                state = self._state(sid)
                if state is None:
                    continue
                for i in range(0, len(batch), self.settings.batch_max):
                    part = batch[i : i + self.settings.batch_max]
                    readings = [
                        Reading(
                            r.parameter,
                            r.value,
                            r.unit,
                            r.host_time,
                            r.mdc,
                            None,
                            Quality(r.quality),
                            r.source,
                        )
                        for r in part
                    ]
                    if not any(x.valid for x in readings):
                        continue
                    cid = f"R{part[0].id}-{part[-1].id}"
                    messages.append(
                        (cid, "readings", sid, self._readings(cid, state, readings, now))
                    )
            for eid, sid, _kind in sigs:
                msg = self.session_message(sid, eid, now)
                if msg is not None:
                    messages.append(msg)
            new_r = int(rows[-1].id) if rows else after_r
            total += outbox.enqueue(
                self.engine,
                messages,
                cursor={READINGS_CURSOR: new_r, ENTRIES_CURSOR: max(after_e, last_e)},
            )
            after_r, after_e = new_r, max(after_e, last_e)
            if len(rows) < SCAN_CHUNK:
                return total

    def _readings(
        self, cid: str, state: SessionState, readings: list[Reading], now: datetime
    ) -> str:
        s = self.settings
        return readings_oru(
            cid,
            state,
            readings,
            now=now,
            sending_facility=s.sending_facility,
            receiving_application=s.receiving_application,
            receiving_facility=s.receiving_facility,
        )

    def session_message(
        self, session_id: int, entry_id: int, now: datetime
    ) -> tuple[str, str, int, str] | None:
        """The signed (or addendum) session's message, or None if that entry signs nothing."""
        state = self._state(session_id)
        if state is None:
            return None
        is_addendum = any(a.entry_id == entry_id for a in state.addenda)
        if not is_addendum and (state.signature is None or state.signature.entry_id != entry_id):
            return None
        cid = f"{'A' if is_addendum else 'S'}{session_id}-{entry_id}"
        s = self.settings
        text = session_oru(
            cid,
            state,
            session_readings(self.engine, session_id),
            signature_entry_id=entry_id,
            now=now,
            sending_facility=s.sending_facility,
            receiving_application=s.receiving_application,
            receiving_facility=s.receiving_facility,
        )
        return (cid, "addendum" if is_addendum else "signed", session_id, text)

    def queue_session(self, session_id: int) -> list[str]:
        """Queue a signed session's message (and its addenda's) now; returns their control ids
        (queuing again changes nothing)."""
        state = self._state(session_id)
        if state is None or state.signature is None:
            return []
        now = self.clock()
        ids = [state.signature.entry_id, *(a.entry_id for a in state.addenda)]
        messages = [m for eid in ids if (m := self.session_message(session_id, eid, now))]
        outbox.enqueue(self.engine, messages)
        return [m[0] for m in messages]

    # ---- delivery -----------------------------------------------------------------------------
    def backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.retry_max_s, s.retry_first_s * 2 ** max(0, attempts)))

    def deliver(self, stop: threading.Event | None = None) -> tuple[int, str]:
        """Send what is due, in order, until the queue is empty or a message fails; returns
        (messages sent, why the first failure failed or "")."""
        sent = 0
        lease = timedelta(seconds=self.settings.ack_timeout_s + self.settings.connect_timeout_s)
        while stop is None or not stop.is_set():
            now = self.clock()
            batch = outbox.due(self.engine, now)
            if not batch:
                return sent, ""
            for m in batch:
                if stop is not None and stop.is_set():
                    return sent, ""
                if not outbox.claim(self.engine, m.id, now, lease):
                    continue  # another sender has it
                try:
                    code = self.link.send(m.control_id, m.message)
                except DeliveryFailed as exc:
                    why = str(exc)
                    outbox.mark_failed(
                        self.engine, m.id, why, self.clock() + self.backoff(m.attempts)
                    )
                    log.warning("hl7 out: %s kept queued: %s", m.control_id, why)
                    return sent, why
                outbox.mark_sent(self.engine, m.id, code, self.clock())
                sent += 1
        return sent, ""

    def run_pass(self, stop: threading.Event | None = None) -> PassReport:
        queued = self.scan()
        sent, why = self.deliver(stop)
        waiting = outbox.queue_counts(self.engine)[outbox.QUEUED]
        return PassReport(queued, sent, why, waiting)


class Hl7OutWorker:
    """Runs :class:`Hl7OutSender` passes every ``poll_s`` on its own thread until stopped."""

    def __init__(self, engine: Engine, settings: Hl7OutSettings) -> None:
        self.sender = Hl7OutSender(engine, settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl7-out", daemon=True)
        self.last: PassReport = PassReport()

    def start(self) -> Hl7OutWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.sender.run_pass(self._stop)
            except Exception:  # the database is away: try again next time
                log.warning("hl7 out: pass failed", exc_info=True)
                self.sender.close()
            self._stop.wait(self.sender.settings.poll_s)


def settings_from_config(raw: Mapping[str, Any] | None, origin: str) -> Hl7OutSettings | None:
    return None if not raw else parse_settings(raw, origin)


def start_from_config(
    engine: Engine, raw: Mapping[str, Any] | None, origin: str = "config"
) -> Hl7OutWorker | None:
    """A running worker when ``[hl7_out]`` is configured, else None (the app's and record's
    hook: start it with the database, ``stop()`` it on the way out)."""
    settings = settings_from_config(raw, origin)
    return None if settings is None else Hl7OutWorker(engine, settings).start()


def status_lines(rows: Iterable[outbox.QueueRow]) -> list[str]:
    out = []
    for r in rows:
        when = r.sent_at if r.state == outbox.SENT else r.next_attempt_at
        what = f"sent {r.ack_code}" if r.state == outbox.SENT else f"queued, try {r.attempts + 1}"
        line = f"{r.id:>6} {r.control_id:<20} {r.kind:<9} {r.session_id:>6} {what:<16} "
        line += (when.isoformat(timespec="seconds") if when else "-") + (
            f"  ({r.last_error})" if r.last_error else ""
        )
        out.append(line)
    return out
