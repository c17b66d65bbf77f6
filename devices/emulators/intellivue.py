"""The monitor side of Philips IntelliVue MIB/RS232 Data Export, driven by a scenario.

Behaves like the monitor as the open implementations describe it (devices.md §2.1, mindleaving's
``SimulatedPhilipsIntellivueMonitor``, OpenICE #128):

* silent until a host associates; answers an association request with an association result
  and then the MDS Create Event Report (absolute + relative time, operating mode);
* refuses a second association while one is alive; an abort or release drops it;
* ignores polls until the host has returned the MDS Create Event Result (the report is repeated
  every few seconds until it has);
* answers single polls at once and extended polls once a second for the requested period, with
  numerics from the scenario: NIBP as one compound value stamped with the cuff cycle's time, HR,
  SpO2, pulse rate and respiration rate; results go out as linked results (RORLS … RORS) so the
  host has to handle multi-part replies;
* drops the association (sends an abort, then nothing) when the host has been silent longer than
  the time-out derived from the host's minimum poll period, as mindleaving's simulator does:
  10 s below 3.3 s, three periods below 43 s, else 130 s;
* for artifact scenarios, puts garbage bytes on the line, corrupts the next result frame's FCS,
  and marks some values questionable or invalid.

Relative time counts 1/8 ms ticks since the monitor was switched on (``uptime_s`` before
scenario time 0) and wraps at 2^32 like the real counter. Poll results leave their absolute time
unset by default, as several real monitors do (devices.md §1.6).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from devices.emulators.base import DeviceEmulator
from devices.protocols import _intellivue_codec as iv
from devices.scenarios import Scenario

_Observation = tuple[int, list[iv.AVA]]

#: junk bytes for artifact scenarios: flags, an escape, and the start of a frame that the next
#: real frame's start flag cuts short (the host must count it and resynchronise)
GARBAGE = b"\x00\xff\x55\xc1\x7d\xaa\x13" + b"\xc0\x11\x01\x00\x20\xe1\x00\x00"
MODEL = b"\x00\x08Philips\x00" + b"\x00\x06MX450\x00"


@dataclass(slots=True)
class _ExtendedPoll:
    invoke_id: int
    request: iv.PollRequest
    until: float  # scenario time when the requested poll period ends
    next_due: float
    sequence: int = 0


def timeout_for_min_poll_period(ticks: int) -> float:
    """The monitor's inactivity time-out for a host's minimum poll period (mindleaving)."""
    period = ticks / iv.TICKS_PER_S
    if period < 3.3:
        return 10.0
    if period < 43.0:
        return 3.0 * period
    return 130.0


class IntelliVueEmulator(DeviceEmulator):
    """An IntelliVue monitor on the MIB/RS232 port."""

    name: ClassVar[str] = "intellivue"

    H_NIBP: ClassVar[int] = 0x0010
    H_HR: ClassVar[int] = 0x0011
    H_SPO2: ClassVar[int] = 0x0012
    H_PR: ClassVar[int] = 0x0013
    H_RR: ClassVar[int] = 0x0014

    def __init__(
        self,
        scenario: Scenario,
        device_epoch: datetime | None = None,
        *,
        uptime_s: float = 18_000.0,
        demo: bool = False,
        linked_replies: bool = True,
        abs_time_in_polls: bool = False,
        numerics_period_s: float = 1.0,
        mds_resend_s: float = 5.0,
    ) -> None:
        super().__init__(scenario, device_epoch)
        self.uptime_s = uptime_s
        self.demo = demo
        self.linked_replies = linked_replies
        self.abs_time_in_polls = abs_time_in_polls
        self.numerics_period_s = numerics_period_s
        self.mds_resend_s = mds_resend_s
        # counters for tests and diagnostics (kept across reset())
        self.associations = 0
        self.refusals = 0
        self.timeouts = 0
        self.poll_results_sent = 0
        self.host_bad_frames = 0
        self.frames_corrupted = 0
        self.garbage_injections = 0
        self._invoke_id = 0
        self.reset()

    # ---- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new connection: no association, no poll, no half-read frame."""
        self._deframer = iv.Deframer()
        self.associated = False
        self.mds_confirmed = False
        self.timeout_s = 10.0
        self._mds_sent_at = 0.0
        self._last_host_rx: float | None = None
        self._ext: _ExtendedPoll | None = None
        self._garbage_was_due = False
        self._corrupt_next = False

    def _drop(self) -> None:
        self.associated = False
        self.mds_confirmed = False
        self._ext = None
        self._corrupt_next = False

    def _next_invoke(self) -> int:
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        return self._invoke_id

    def rel_time(self, t_s: float) -> int:
        """The monitor's RelativeTime at scenario time ``t_s``."""
        return iv.rel_ticks(self.uptime_s + t_s)

    @property
    def polling(self) -> bool:
        return self._ext is not None

    # ---- host → monitor -----------------------------------------------------------------------
    def on_host_bytes(self, data: bytes, t_s: float) -> bytes:
        out = bytearray(self._check_timeout(t_s))
        for event in self._deframer.feed(data):
            if event.payload is None:
                self.host_bad_frames += 1
                continue
            self._last_host_rx = t_s  # any good frame is a sign of life
            try:
                out += self._on_message(event.payload, t_s)
            except iv.CodecError:
                self.host_bad_frames += 1
                if event.payload[:1] == bytes((iv.SPDU_CN,)) and not self.associated:
                    out += iv.encode_frame(iv.encode_refuse())  # unintelligible request
        return bytes(out)

    def _on_message(self, payload: bytes, t: float) -> bytes:
        if not payload:
            raise iv.CodecError("empty message")
        sid = payload[0]
        if sid in iv.ASSOCIATION_SPDUS:
            spdu, profile = iv.parse_association(payload)
            if spdu == iv.SPDU_CN and profile is not None:
                return self._on_association_request(profile, t)
            if spdu == iv.SPDU_AB:
                self._drop()
            elif spdu == iv.SPDU_FN:
                self._drop()
                return iv.encode_frame(iv.encode_release_response())
            return b""
        if sid != iv.SPDU_DATA:
            raise iv.CodecError(f"unknown session id 0x{sid:02X}")
        if not self.associated:
            return b""  # data export without an association is ignored
        op = iv.parse_remote_operation(payload)
        if op.ro_type == iv.RORS and op.command == iv.CMD_CONFIRMED_EVENT_REPORT:
            if iv.parse_event_report(op.data).event_type == iv.NOTI_MDS_CREATE:
                self.mds_confirmed = True
            return b""
        if op.ro_type == iv.ROIV and op.command == iv.CMD_CONFIRMED_ACTION:
            request = iv.parse_poll_request(op.data)
            if not self.mds_confirmed:
                return b""
            return self._on_poll_request(op.invoke_id, request, t)
        return b""

    def _on_association_request(self, client: iv.PollProfile, t: float) -> bytes:
        if self.associated:
            self.refusals += 1
            return iv.encode_frame(iv.encode_refuse())
        self.associated = True
        self.mds_confirmed = False
        self._ext = None
        self.associations += 1
        self.timeout_s = timeout_for_min_poll_period(client.min_poll_period)
        mine = iv.PollProfile(
            system_type=iv.SYST_SERVER,
            startup_mode=iv.COLD_START,
            min_poll_period=client.min_poll_period,
            max_mtu_rx=1000,
            max_mtu_tx=min(client.max_mtu_rx, 1000),
            ext_options=client.ext_options & iv.POLL_EXT_PERIOD_NU_1SEC,
        )
        accept = iv.encode_frame(iv.encode_association_response(mine))
        return accept + self._mds_create(t)

    def _mds_create(self, t: float) -> bytes:
        now = self.device_time(t)
        abs_raw = iv.encode_abs_time(now)
        # Take the relative time at the instant the (1/100 s) absolute time names, so the pair
        # is a consistent baseline.
        named = iv.decode_abs_time(abs_raw)
        t_named = t - (now - named).total_seconds() if named is not None else t
        rel = self.rel_time(t_named)
        mode = iv.OPMODE_DEMO if self.demo else iv.OPMODE_MONITORING
        attributes: list[iv.AVA] = [
            (iv.ATTR_SYS_TYPE, struct.pack(">HH", iv.PART_OBJ, iv.DEV_MON_PHYSIO_MULTI_PARAM_MDS)),
            (iv.ATTR_ID_MODEL, MODEL),
            (iv.ATTR_MODE_OP, struct.pack(">H", mode)),
            (iv.ATTR_VMS_MDS_STAT, struct.pack(">H", iv.MDS_STATUS_OPERATING)),
            (iv.ATTR_TIME_ABS, abs_raw),
            (iv.ATTR_TIME_REL, struct.pack(">I", rel)),
        ]
        self._mds_sent_at = t
        return iv.encode_frame(iv.encode_mds_create_event(self._next_invoke(), rel, attributes))

    def _on_poll_request(self, invoke_id: int, request: iv.PollRequest, t: float) -> bytes:
        if request.action_type == iv.ACT_POLL:
            return self._reply(invoke_id, request, t, self._observations(request, t, 0), 0)
        period = request.period_ticks
        if request.obj_code != iv.MOC_NUMERIC or not period:
            # one-shot extended poll (or an object we do not emulate): a single result
            return self._reply(invoke_id, request, t, self._observations(request, t, 0), 0)
        # A new extended poll for numerics replaces the running one (that is how the host
        # renews it before the period runs out).
        self._ext = _ExtendedPoll(invoke_id, request, t + period / iv.TICKS_PER_S, t)
        return self._extended_reply(t)

    # ---- monitor → host on its own ------------------------------------------------------------
    def tick(self, t_s: float) -> bytes:
        out = bytearray(self._check_timeout(t_s))
        if not self.associated:
            return bytes(out)
        if not self.mds_confirmed and t_s - self._mds_sent_at >= self.mds_resend_s:
            out += self._mds_create(t_s)
        due = self.scenario.garbage_due(t_s)
        if due and not self._garbage_was_due:  # once per artifact window
            out += GARBAGE
            self._corrupt_next = True
            self.garbage_injections += 1
        self._garbage_was_due = due
        ext = self._ext
        if ext is not None and self.mds_confirmed:
            if t_s >= ext.until:
                self._ext = None  # poll period over: the host should have renewed it
            elif t_s >= ext.next_due:
                out += self._extended_reply(t_s)
        return bytes(out)

    def _check_timeout(self, t: float) -> bytes:
        if (
            self.associated
            and self._last_host_rx is not None
            and t - self._last_host_rx > self.timeout_s
        ):
            self.timeouts += 1
            self._drop()
            return iv.encode_frame(iv.encode_abort())
        return b""

    # ---- poll results -------------------------------------------------------------------------
    def _extended_reply(self, t: float) -> bytes:
        ext = self._ext
        assert ext is not None
        seq = ext.sequence
        ext.sequence = (seq + 1) & 0xFFFF
        ext.next_due += self.numerics_period_s
        if ext.next_due <= t:
            ext.next_due = t + self.numerics_period_s
        observations = self._observations(ext.request, t, seq)
        return self._reply(ext.invoke_id, ext.request, t, observations, seq)

    def _observations(self, request: iv.PollRequest, t: float, seq: int) -> list[_Observation]:
        if request.obj_code != iv.MOC_NUMERIC:
            return []
        return self.numerics(t, seq)

    def numerics(self, t: float, seq: int = 0) -> list[_Observation]:
        """The numeric objects at scenario time ``t`` (``seq`` varies artifact marks)."""
        sc = self.scenario
        v = sc.vitals(t)
        base = iv.MS_DEMO_DATA if self.demo else 0
        art = sc.artifact

        def nu(physio: int, unit: int, value: float | None, state: int = 0) -> iv.NuObsValue:
            return iv.NuObsValue(physio, base | state, unit, iv.encode_float(value))

        index = sc.cuff_index_at(t)
        nibp_attrs: list[iv.AVA]
        if index >= 0:
            cuff = sc.cuff(index)
            values: Sequence[float | None] = (cuff.sys, cuff.dia, cuff.mean)
            # stamped with the moment the cuff cycle completed: the host's "new cycle" marker
            stamps: list[iv.AVA] = [
                (iv.ATTR_TIME_STAMP_REL, struct.pack(">I", self.rel_time(cuff.t_s)))
            ]
            if self.abs_time_in_polls:
                stamps.append(
                    (iv.ATTR_TIME_STAMP_ABS, iv.encode_abs_time(self.device_time(cuff.t_s)))
                )
        else:
            values, stamps = (None, None, None), []  # no cuff measurement yet
        nibp_attrs = [
            iv.encode_nu_compound(
                [
                    nu(iv.NOM_PRESS_BLD_NONINV_SYS, iv.NOM_DIM_MMHG, values[0]),
                    nu(iv.NOM_PRESS_BLD_NONINV_DIA, iv.NOM_DIM_MMHG, values[1]),
                    nu(iv.NOM_PRESS_BLD_NONINV_MEAN, iv.NOM_DIM_MMHG, values[2]),
                ]
            ),
            *stamps,
        ]
        spo2_state = iv.MS_QUESTIONABLE if art and seq % 11 == 5 else 0
        pr_value: float | None = v.pr
        pr_state = 0
        if art and seq % 13 == 7:
            pr_value, pr_state = None, iv.MS_INVALID  # no number: the host must skip it
        rr_state = iv.MS_INVALID if art and seq % 17 == 3 else 0
        return [
            (self.H_NIBP, nibp_attrs),
            (
                self.H_HR,
                [iv.encode_nu_value(nu(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, v.hr))],
            ),
            (
                self.H_SPO2,
                [
                    iv.encode_nu_value(
                        nu(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_PERCENT, v.spo2, spo2_state)
                    )
                ],
            ),
            (
                self.H_PR,
                [
                    iv.encode_nu_value(
                        nu(iv.NOM_PLETH_PULS_RATE, iv.NOM_DIM_BEAT_PER_MIN, pr_value, pr_state)
                    )
                ],
            ),
            (
                self.H_RR,
                [
                    iv.encode_nu_value(
                        nu(iv.NOM_RESP_RATE, iv.NOM_DIM_RESP_PER_MIN, v.rr, rr_state)
                    )
                ],
            ),
        ]

    def _reply(
        self,
        invoke_id: int,
        request: iv.PollRequest,
        t: float,
        observations: list[_Observation],
        seq: int,
    ) -> bytes:
        abs_raw = (
            iv.encode_abs_time(self.device_time(t))
            if self.abs_time_in_polls
            else iv.ABS_TIME_INVALID
        )
        if self.linked_replies and len(observations) > 2:
            parts = [observations[:1], observations[1:3], observations[3:]]
        else:
            parts = [observations]
        frames: list[bytes] = []
        for i, part in enumerate(parts):
            linked: tuple[int, int] | None = None
            if i < len(parts) - 1:  # RORLS first … last, then the closing RORS
                state = (
                    iv.RORLS_FIRST
                    if i == 0
                    else iv.RORLS_LAST
                    if i == len(parts) - 2
                    else iv.RORLS_NOT_FIRST_NOT_LAST
                )
                linked = (state, i + 1)
            frames.append(
                iv.encode_frame(
                    iv.encode_poll_reply(
                        invoke_id=invoke_id,
                        action_type=request.action_type,
                        poll_number=request.poll_number,
                        sequence_number=seq,
                        rel_time=self.rel_time(t),
                        abs_time=abs_raw,
                        obj_code=request.obj_code,
                        attr_group=request.attr_group,
                        observations=part,
                        linked=linked,
                    )
                )
            )
        if self._corrupt_next and frames:
            k = self.frames_corrupted % len(frames)  # vary which numerics the noise destroys
            frames[k] = _corrupt(frames[k])
            self._corrupt_next = False
            self.frames_corrupted += 1
        self.poll_results_sent += 1
        return b"".join(frames)


def _corrupt(frame: bytes) -> bytes:
    """Flip one bit in the middle of a frame so the FCS fails (framing stays intact)."""
    data = bytearray(frame)
    special = (iv.BOF, iv.EOF, iv.ESC)
    for i in range(len(data) // 2, len(data) - 1):
        if data[i] not in special and data[i] ^ 0x01 not in special and data[i - 1] != iv.ESC:
            data[i] ^= 0x01
            break
    return bytes(data)
