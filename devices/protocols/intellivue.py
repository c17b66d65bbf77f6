"""Philips IntelliVue MX/MP series over the MIB/RS232 Data Export interface (devices.md §2.1).

Dialog (host side): association request → association result → the monitor's MDS Create Event
Report, which the host must answer → an extended poll for numerics with a poll period → the
monitor sends a poll result about once a second for that period. The monitor drops an
association that stays quiet past its time-out (mdpnp/mdpnp#128), so the host keeps it alive.

Timers follow OpenICE's ``AbstractDemoIntellivue`` (devices.md §1.2): association request re-sent
every 2 s until accepted; a keep-alive when nothing was received for 4 s or nothing sent for 8 s;
renegotiation after 5 s without any message; extended polls asked for 10 min and renewed after
9 min. The keep-alive is a single poll of the alert object with the VMO static context group,
the lightest request (mindleaving's choice, "as suggested by the manual").

Times: several monitors leave the absolute time of poll results unset (devices.md §1.6), so the
MDS create event's absolute time and relative time taken at the same instant form a baseline, and
``device_time = base_abs + (rel − base_rel) · 125 µs``. Without a baseline a valid absolute time
in the reply is used; otherwise device_time is None.

Not supported on purpose: waves (RTSA), alerts and patient demographics (the keep-alive polls
the alert object but its content is ignored), numerics other than the mapped ones, LAN/UDP, the
auto-speed protocol, and association release on shutdown (the monitor's time-out ends it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from devices.protocols import _intellivue_codec as iv
from devices.protocols import mdc
from devices.protocols.base import DeviceProtocol, Parity, SerialSettings
from devices.readings import Quality, Reading, make_reading

# ---- parameter mapping --------------------------------------------------------------------------
#: unit code → (factor, offset) converting to the canonical UCUM unit of the parameter
_Conv = tuple[float, float]
_MMHG_PER_KPA = 7.500615758
_PRESSURE: dict[int, _Conv] = {
    iv.NOM_DIM_MMHG: (1.0, 0.0),
    iv.NOM_DIM_KILO_PASCAL: (_MMHG_PER_KPA, 0.0),
}
_RATE: dict[int, _Conv] = {
    iv.NOM_DIM_BEAT_PER_MIN: (1.0, 0.0),
    iv.NOM_DIM_RESP_PER_MIN: (1.0, 0.0),
}
_PERCENT: dict[int, _Conv] = {iv.NOM_DIM_PERCENT: (1.0, 0.0)}
_PERF: dict[int, _Conv] = {iv.NOM_DIM_PERCENT: (1.0, 0.0), iv.NOM_DIM_DIMLESS: (1.0, 0.0)}
_TEMP: dict[int, _Conv] = {iv.NOM_DIM_DEGC: (1.0, 0.0), iv.NOM_DIM_FAHR: (5.0 / 9.0, -32.0)}


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    units: dict[int, _Conv]
    mdc: str  # IEEE ref id of the physio id (MDC = 2·65536 + code, devices.md §2.1)
    origin: str  # devices.protocols.mdc.PHILIPS_ORIGIN


def _p(physio: int, name: str, units: dict[int, _Conv], refid: str) -> _Param:
    return _Param(name, units, refid, mdc.PHILIPS_ORIGIN[physio])


#: Philips physio id → canonical parameter. Both respiration rates are emitted when a monitor
#: reports both (impedance ``NOM_RESP_RATE`` and airway ``NOM_AWAY_RESP_RATE``), told apart by
#: their origin; the chair's source setting (ketamon.domain.sources) picks the charted one.
PHYSIO_PARAMETERS: dict[int, _Param] = {
    iv.NOM_ECG_CARD_BEAT_RATE: _p(iv.NOM_ECG_CARD_BEAT_RATE, "hr", _RATE, "MDC_ECG_HEART_RATE"),
    iv.NOM_PLETH_PULS_RATE: _p(iv.NOM_PLETH_PULS_RATE, "pr", _RATE, "MDC_PLETH_PULS_RATE"),
    # the cuff's pulse rate, a Philips private id (devices.md §2.1: 61669, 0xF0E5)
    iv.NOM_PRESS_BLD_NONINV_PULS_RATE: _p(
        iv.NOM_PRESS_BLD_NONINV_PULS_RATE, "pr", _RATE, "MDC_PULS_RATE_NON_INV"
    ),
    iv.NOM_PULS_OXIM_SAT_O2: _p(iv.NOM_PULS_OXIM_SAT_O2, "spo2", _PERCENT, "MDC_PULS_OXIM_SAT_O2"),
    iv.NOM_AWAY_RESP_RATE: _p(iv.NOM_AWAY_RESP_RATE, "rr", _RATE, "MDC_AWAY_RESP_RATE"),
    iv.NOM_RESP_RATE: _p(iv.NOM_RESP_RATE, "rr", _RATE, "MDC_RESP_RATE"),
    iv.NOM_AWAY_CO2_ET: _p(iv.NOM_AWAY_CO2_ET, "etco2", _PRESSURE, "MDC_AWAY_CO2_ET"),
    iv.NOM_TEMP: _p(iv.NOM_TEMP, "temp", _TEMP, "MDC_TEMP"),
    iv.NOM_PULS_OXIM_PERF_REL: _p(
        iv.NOM_PULS_OXIM_PERF_REL, "pi", _PERF, "MDC_PULS_OXIM_PERF_REL"
    ),
}
#: NIBP components (normally one compound NuObsValue list under NOM_PRESS_BLD_NONINV)
NIBP_PHYSIO: dict[int, str] = {
    iv.NOM_PRESS_BLD_NONINV_SYS: "nibp_sys",
    iv.NOM_PRESS_BLD_NONINV_DIA: "nibp_dia",
    iv.NOM_PRESS_BLD_NONINV_MEAN: "nibp_mean",
}


# ---- status and "no value": the IntelliVue table --------------------------------------------
# MeasurementState bits (devices.md §2.1, from the Philips Data Export Interface Programming Guide
# as implemented by VSCaptureMP Class2.cs and PERSEUS): 0x8000 invalid → INVALID, 0x4000
# questionable → QUESTIONABLE, 0x2000 unavailable → no reading, 0x1000 calibration ongoing →
# CALIBRATION, 0x0800 test data → TEST, 0x0400 demo data → DEMO, 0x0020 measurement ongoing →
# NIBP not yet a result (no reading). FLOAT-Type specials NaN 0x007FFFFF, NRes 0x00800000,
# ±INF 0x007FFFFE/0x00800002 (§2.1) → no reading. MDS operating mode demo → DEMO, service →
# TEST (quality_from_opmode).


def quality_from_state(state: int) -> Quality:
    """MeasurementState bits → Quality flags (``unavailable`` is handled by skipping)."""
    q = Quality.NONE
    if state & iv.MS_INVALID:
        q |= Quality.INVALID
    if state & iv.MS_QUESTIONABLE:
        q |= Quality.QUESTIONABLE
    if state & iv.MS_CALIBRATION_ONGOING:
        q |= Quality.CALIBRATION
    if state & iv.MS_TEST_DATA:
        q |= Quality.TEST
    if state & iv.MS_DEMO_DATA:
        q |= Quality.DEMO
    return q


def quality_from_opmode(mode: int) -> Quality:
    """MDS operating mode → flags for every value: demo mode makes up signals; service mode is
    not patient monitoring either, so it is marked as test data."""
    q = Quality.NONE
    if mode & iv.OPMODE_DEMO:
        q |= Quality.DEMO
    if mode & iv.OPMODE_SERVICE:
        q |= Quality.TEST
    return q


class _Phase(enum.Enum):
    IDLE = "idle"  # no on_connect yet: passive decoding (replayed captures), never transmits
    ASSOCIATING = "associating"  # association request sent, waiting for the result
    ASSOCIATED = "associated"  # accepted, waiting for the MDS Create Event Report
    OPERATING = "operating"  # MDS create answered, extended poll running


@dataclass(slots=True)
class IntelliVueCounters:
    """Session events, for diagnostics and tests (ProtocolStats counts bytes/frames/readings)."""

    association_requests: int = 0
    associations: int = 0
    refusals: int = 0
    aborts_received: int = 0
    renegotiations: int = 0
    mds_creates: int = 0
    polls_requested: int = 0
    keepalives: int = 0
    poll_results: int = 0
    remote_errors: int = 0
    unit_mismatches: int = 0


_NibpKey = tuple[object, ...]


class IntelliVueProtocol(DeviceProtocol):
    """Host side of the IntelliVue MIB/RS232 Data Export protocol (sans-I/O)."""

    name: ClassVar[str] = "intellivue"
    # Fixed 115200 8N1, no flow control (VSCaptureMP, OpenICE, PERSEUS, Vital Recorder); the
    # monitor's "Data Export" port must be set to the same *fixed* speed (19200 also exists).
    default_serial: ClassVar[SerialSettings] = SerialSettings(
        baudrate=115200, bytesize=8, parity=Parity.NONE, stopbits=1, rtscts=False, xonxoff=False
    )
    # The monitor answers at least once a second while polled; the protocol itself renegotiates
    # after 5 s of silence (OpenICE), so the supervisor's watchdog is a slightly later backstop.
    quiet_time_s: ClassVar[float] = 6.0
    # One numerics poll result per second from the emulator (3 linked frames, ~330 bytes).
    nominal_bytes_per_s: ClassVar[float] = 330.0

    ASSOCIATION_RETRY_S: ClassVar[float] = 2.0
    KEEPALIVE_RX_IDLE_S: ClassVar[float] = 4.0
    KEEPALIVE_TX_IDLE_S: ClassVar[float] = 8.0
    SILENCE_RENEGOTIATE_S: ClassVar[float] = 5.0
    POLL_PERIOD_S: ClassVar[float] = 600.0
    POLL_RENEW_S: ClassVar[float] = 540.0

    def __init__(
        self,
        source: str = "",
        *,
        profile: iv.PollProfile | None = None,
        attr_group: int = iv.GRP_ALL,
        keepalive: bool = True,
    ) -> None:
        super().__init__(source)
        #: association user info; numerics at 1 s only (no waves, no enumerations)
        self.profile = profile or iv.PollProfile()
        #: attribute group of the numerics poll; "all" as VSCaptureMP asks (field-proven)
        self.attr_group = attr_group
        #: tests switch this off to show the monitor dropping a silent host
        self.keepalive = keepalive
        self.counters = IntelliVueCounters()
        self._deframer = iv.Deframer()
        self._invoke_id = 0
        self._poll_number = 0
        # NIBP de-duplication survives reset(): a reconnect must not re-emit the cuff reading
        # the monitor still shows (it keeps its per-object timestamp).
        self._last_nibp: _NibpKey | None = None
        self._clear_session()

    # ---- session state ------------------------------------------------------------------------
    def _clear_session(self) -> None:
        self._phase = _Phase.IDLE
        self._pending = bytearray()
        self._assoc_sent_at: datetime | None = None
        self._last_rx: datetime | None = None
        self._last_tx: datetime | None = None
        self._keepalive_at: datetime | None = None
        self._poll_at: datetime | None = None
        #: (absolute time, relative time) of the MDS create event: the device clock baseline
        self._baseline: tuple[datetime, int] | None = None
        #: (raw RelativeTime, unwrapped ticks) of the latest poll: the wrap reference
        self._rel_ref: tuple[int, int] = (0, 0)
        #: flags from the MDS operating mode (demo / service) applied to every value
        self._mds_quality = Quality.NONE

    def reset(self) -> None:
        super().reset()
        self._deframer.reset()
        self._clear_session()

    @property
    def phase(self) -> str:
        return self._phase.value

    @property
    def baseline(self) -> tuple[datetime, int] | None:
        return self._baseline

    def _next_invoke(self) -> int:
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        return self._invoke_id

    def _next_poll_number(self) -> int:
        self._poll_number = (self._poll_number + 1) & 0xFFFF
        return self._poll_number

    # ---- requests -----------------------------------------------------------------------------
    def _association_request(self, now: datetime) -> bytes:
        self._assoc_sent_at = now
        self.counters.association_requests += 1
        return iv.encode_frame(iv.encode_association_request(self.profile))

    def _begin_association(self, now: datetime, *, abort_first: bool) -> bytes:
        """Abort whatever the monitor may still hold for this port, then ask to associate.

        A monitor that believes an old association is alive (host restarted, watchdog reset)
        refuses a new one until its time-out (mindleaving's simulator and ours do; unverified on
        hardware); the abort clears it at once. An abort without an association is ignored.
        """
        self._phase = _Phase.ASSOCIATING
        self._streaming = False
        out = iv.encode_frame(iv.encode_abort()) if abort_first else b""
        return out + self._association_request(now)

    def _poll_request(self, now: datetime) -> bytes:
        self._poll_at = now
        self.counters.polls_requested += 1
        return iv.encode_frame(
            iv.encode_poll_request(
                self._next_invoke(),
                self._next_poll_number(),
                iv.MOC_NUMERIC,
                self.attr_group,
                extended=True,
                period_ticks=iv.rel_ticks(self.POLL_PERIOD_S),
            )
        )

    def _keepalive_request(self, now: datetime) -> bytes:
        self._keepalive_at = now
        self.counters.keepalives += 1
        return iv.encode_frame(
            iv.encode_poll_request(
                self._next_invoke(),
                self._next_poll_number(),
                iv.MOC_ALERT,
                iv.GRP_VMO_STATIC,
                extended=False,
            )
        )

    def on_connect(self, now: datetime) -> bytes:
        super().on_connect(now)
        self._deframer.reset()
        self._pending.clear()
        out = self._begin_association(now, abort_first=True)
        self._last_tx = now
        return out

    def outgoing(self, now: datetime) -> bytes:
        if self._phase is _Phase.IDLE:
            self._pending.clear()
            return b""
        out = bytearray(self._pending)
        self._pending.clear()
        if self._phase is _Phase.ASSOCIATING:
            if _elapsed(now, self._assoc_sent_at) >= self.ASSOCIATION_RETRY_S:
                out += self._association_request(now)
        elif _elapsed(now, self._last_rx) >= self.SILENCE_RENEGOTIATE_S:
            # Associated but the monitor went quiet (cable, power, it dropped us): start over.
            self.counters.renegotiations += 1
            out += self._begin_association(now, abort_first=True)
        elif self._phase is _Phase.OPERATING:
            if _elapsed(now, self._poll_at) >= self.POLL_RENEW_S:
                out += self._poll_request(now)
            rx_idle = min(_elapsed(now, self._last_rx), _elapsed(now, self._keepalive_at))
            if self.keepalive and (
                rx_idle >= self.KEEPALIVE_RX_IDLE_S
                or _elapsed(now, self._last_tx) >= self.KEEPALIVE_TX_IDLE_S
            ):
                out += self._keepalive_request(now)
        if out:
            self._last_tx = now
        return bytes(out)

    # ---- receiving ----------------------------------------------------------------------------
    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        self.stats.bytes_in += len(data)
        readings: list[Reading] = []
        for event in self._deframer.feed(data):
            if event.payload is None:
                self.stats.bad_frame(event.error)
                continue
            self._last_rx = now
            try:
                readings.extend(self._on_message(event.payload, now))
            except iv.CodecError as exc:
                self.stats.bad_frame(f"malformed message (FCS good): {exc}")
                continue
            except Exception as exc:  # feed() must never raise; keep the stream going
                self.stats.bad_frame(f"could not decode message: {exc!r}")
                continue
            self.stats.frames_ok += 1
        self.stats.readings += len(readings)
        return readings

    def _queue(self, frame: bytes) -> None:
        if self._phase is not _Phase.IDLE:
            self._pending += frame

    def _on_message(self, payload: bytes, now: datetime) -> list[Reading]:
        if not payload:
            raise iv.CodecError("empty message")
        sid = payload[0]
        if sid == iv.SPDU_DATA:
            return self._on_data_export(iv.parse_remote_operation(payload), now)
        if sid in iv.ASSOCIATION_SPDUS:
            spdu, _profile = iv.parse_association(payload)
            self._on_association(spdu, now)
            return []
        raise iv.CodecError(f"unknown session id 0x{sid:02X}")

    def _on_association(self, spdu: int, now: datetime) -> None:
        idle = self._phase is _Phase.IDLE
        if spdu == iv.SPDU_AC:
            self.counters.associations += 1
            if not idle:
                self._phase = _Phase.ASSOCIATED
        elif spdu == iv.SPDU_RF:
            # Usually a stale association on the monitor: abort it, retry on the 2 s timer.
            self.counters.refusals += 1
            if not idle:
                self._queue(iv.encode_frame(iv.encode_abort()))
                self._phase = _Phase.ASSOCIATING
                self._streaming = False
                self._assoc_sent_at = now
        elif spdu == iv.SPDU_AB:
            self.counters.aborts_received += 1
            if not idle:
                self._queue(self._begin_association(now, abort_first=False))
        elif spdu == iv.SPDU_FN:
            if not idle:
                self._queue(iv.encode_frame(iv.encode_release_response()))
                self._phase = _Phase.ASSOCIATING
                self._streaming = False
                self._assoc_sent_at = now
        elif spdu == iv.SPDU_DN and not idle:
            self._phase = _Phase.ASSOCIATING
            self._streaming = False
            self._assoc_sent_at = now

    def _on_data_export(self, op: iv.RemoteOperation, now: datetime) -> list[Reading]:
        if op.ro_type == iv.ROIV and op.command == iv.CMD_CONFIRMED_EVENT_REPORT:
            event = iv.parse_event_report(op.data)
            if event.event_type == iv.NOTI_MDS_CREATE:
                self._on_mds_create(op.invoke_id, event, now)
            else:
                # Any confirmed event report wants a result, or the monitor repeats it.
                self._queue(
                    iv.encode_frame(
                        iv.encode_event_report_result(
                            op.invoke_id,
                            event.event_time,
                            event.event_type,
                            obj_class=event.obj_class,
                            context_id=op.context_id,
                        )
                    )
                )
            return []
        if op.ro_type in (iv.RORS, iv.RORLS) and op.command == iv.CMD_CONFIRMED_ACTION:
            action, data = iv.parse_action_result(op.data)
            if action in (iv.ACT_POLL, iv.ACT_POLL_EXT):
                return self._on_poll_reply(iv.parse_poll_reply(action, data), now)
            return []
        if op.ro_type == iv.ROER:
            self.counters.remote_errors += 1
        return []

    def _on_mds_create(self, invoke_id: int, event: iv.EventReport, now: datetime) -> None:
        self.counters.mds_creates += 1
        abs_time: datetime | None = None
        rel_time: int | None = None
        mode = 0
        for aid, value in iv.parse_mds_create_info(event.info):
            if aid == iv.ATTR_TIME_ABS:
                abs_time = iv.decode_abs_time(value)
            elif aid == iv.ATTR_TIME_REL and len(value) == 4:
                rel_time = int.from_bytes(value, "big")
            elif aid == iv.ATTR_MODE_OP and len(value) >= 2:
                mode = int.from_bytes(value[:2], "big")
        self._baseline = (abs_time, rel_time) if abs_time and rel_time is not None else None
        if rel_time is not None:
            self._rel_ref = (rel_time, rel_time)
        self._mds_quality = quality_from_opmode(mode)
        if self._phase is _Phase.IDLE:
            return
        # The result echoes the event's invoke id (VSCaptureMP hard-codes 1, which only works
        # because the monitor's first invoke id happens to be 1).
        self._queue(iv.encode_frame(iv.encode_event_report_result(invoke_id, event.event_time)))
        if self._phase is not _Phase.OPERATING:
            # An MDS create also proves the association when its result frame got lost.
            self._phase = _Phase.OPERATING
            self._queue(self._poll_request(now))

    # ---- numerics -----------------------------------------------------------------------------
    def _rel_to_time(self, rel: int, *, advance: bool = False) -> datetime | None:
        """Device time of a RelativeTime, monotonic across counter wraps.

        The 32-bit counter (1/8 ms) wraps every ~6.2 days. Each value is placed relative to the
        latest poll time seen (signed difference, tolerant of half a period either way) on an
        unwrapped tick count, so the device time keeps growing across any number of wraps, not
        only within ±3.1 days of the baseline. ``advance``: this is a poll's own time, which
        moves the reference forward (per-object stamps, e.g. NIBP, may lie in the past).
        """
        if self._baseline is None:
            return None
        base_abs, base_rel = self._baseline
        last_raw, last_unwrapped = self._rel_ref
        unwrapped = last_unwrapped + iv.rel_delta_ticks(rel, last_raw)
        if advance and unwrapped > last_unwrapped:
            self._rel_ref = (rel, unwrapped)
        return base_abs + timedelta(microseconds=(unwrapped - base_rel) * 125)

    def _time_of(
        self, rel: int | None, abs_raw: bytes | None, *, advance: bool = False
    ) -> datetime | None:
        t = self._rel_to_time(rel, advance=advance) if rel is not None else None
        if t is None and abs_raw is not None:
            t = iv.decode_abs_time(abs_raw)
        return t

    def _on_poll_reply(self, reply: iv.PollReply, now: datetime) -> list[Reading]:
        self.counters.poll_results += 1
        if reply.obj_code != iv.MOC_NUMERIC:
            return []  # keep-alive answers (alert object) and anything else we did not ask for
        if self._phase in (_Phase.ASSOCIATED, _Phase.OPERATING):
            self._streaming = True
        poll_time = self._time_of(reply.rel_time, reply.abs_time, advance=True)
        found: list[Reading] = []
        nibp_readings: list[Reading] = []
        for obs in reply.observations:
            stamp_rel: int | None = None
            stamp_abs: bytes | None = None
            values: list[iv.NuObsValue] = []
            for aid, value in obs.attributes:
                if aid == iv.ATTR_TIME_STAMP_REL and len(value) == 4:
                    stamp_rel = int.from_bytes(value, "big")
                elif aid == iv.ATTR_TIME_STAMP_ABS and len(value) == 8:
                    stamp_abs = value if iv.decode_abs_time(value) else None
                elif aid in (iv.ATTR_NU_VAL_OBS, iv.ATTR_NU_CMPD_VAL_OBS):
                    values.extend(iv.decode_nu_values(aid, value))
            # Per-object stamps (NIBP: when the cuff measured) beat the poll's own time.
            when = self._time_of(stamp_rel, stamp_abs) or poll_time
            nibp: dict[str, iv.NuObsValue] = {}
            for v in values:
                if v.physio_id in NIBP_PHYSIO:
                    nibp[NIBP_PHYSIO[v.physio_id]] = v
                    continue
                param = PHYSIO_PARAMETERS.get(v.physio_id)
                if param is None:
                    continue
                reading = self._reading(
                    param.name, param.units, v, when, now, mdc=param.mdc, origin=param.origin
                )
                if reading is not None:
                    found.append(reading)
            if nibp:
                key: _NibpKey
                if stamp_rel is not None:
                    key = ("rel", stamp_rel)
                elif stamp_abs is not None:
                    key = ("abs", stamp_abs)
                else:
                    # No timestamp from this monitor: a change of the values marks a new cycle.
                    key = ("val", *sorted((k, v.raw_value) for k, v in nibp.items()))
                nibp_readings.extend(self._nibp(nibp, key, when, now))
        return nibp_readings + found

    def _nibp(
        self, parts: dict[str, iv.NuObsValue], key: _NibpKey, when: datetime | None, now: datetime
    ) -> list[Reading]:
        """One set of NIBP readings per cuff cycle (NIBP is episodic)."""
        if any(v.state & iv.MS_MSMT_ONGOING for v in parts.values()):
            return []  # cuff inflating: the result is not there yet
        if key == self._last_nibp:
            return []
        out = [
            r
            for name in ("nibp_sys", "nibp_dia", "nibp_mean")
            if name in parts
            and (r := self._reading(name, _PRESSURE, parts[name], when, now)) is not None
        ]
        if out:  # nothing measured yet (all NaN): wait for the first real cycle
            self._last_nibp = key
        return out

    def _reading(
        self,
        name: str,
        units: dict[int, _Conv],
        v: iv.NuObsValue,
        when: datetime | None,
        now: datetime,
        *,
        mdc: str | None = None,
        origin: str | None = None,
    ) -> Reading | None:
        if v.state & iv.MS_UNAVAILABLE:
            return None
        value = v.value
        if value is None:
            return None  # NaN / NRes / ±INF: the monitor has no number to give
        conv = units.get(v.unit_code)
        if conv is None:
            self.counters.unit_mismatches += 1
            return None
        factor, offset = conv
        if factor != 1.0 or offset != 0.0:
            value = round((value + offset) * factor, 2)
        return make_reading(
            name,
            value,
            now,
            device_time=when,
            quality=quality_from_state(v.state) | self._mds_quality,
            source=self.source,
            mdc=mdc,
            origin=origin,
        )


def _elapsed(now: datetime, since: datetime | None) -> float:
    """Seconds since ``since`` (infinite if never)."""
    if since is None:
        return float("inf")
    return (now - since).total_seconds()
