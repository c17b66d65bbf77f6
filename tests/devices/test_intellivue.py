"""Philips IntelliVue MIB/RS232: vectors from devices.md §2.1, fuzzing, loopback and a real pty."""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import crcmod.predefined
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.emulators.intellivue import IntelliVueEmulator, timeout_for_min_poll_period
from devices.loopback import run_loopback
from devices.protocols import _intellivue_codec as iv
from devices.protocols import protocol_class
from devices.protocols.base import Parity
from devices.protocols.intellivue import IntelliVueProtocol, quality_from_state
from devices.readings import Quality, Reading
from devices.scenarios import Link, get_scenario
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import SerialTransport

EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# ---- vectors, verbatim from devices.md §2.1 ----------------------------------------------------
V1 = hx(
    "C0 11 01 00 30 E1 00 00 02 00 01 00 28 00 01 00 07 00 22 00 21 00 00 00 00 00 00 00 00 F1"
    " 3B 00 14 00 01 00 01 00 06 00 00 00 01 00 08 F1 3E 00 04 00 03 A9 80 58 71 C1"
)
V2 = hx(
    "C0 11 01 00 1C E1 00 00 02 00 02 00 14 00 01 00 01 00 0E 00 21 00 00 00 00 00 0A BD 00 0D"
    " 06 00 00 39 17 C1"
)
V4 = hx(
    "C0 11 01 00 8C E1 00 00 02 00 02 00 84 00 01 00 07 00 7E 00 21 00 00 00 00 F1 3B 00 74 00"
    " 01 00 01 00 12 34 56 20 25 06 10 14 30 00 00 00 01 00 06 00 00 00 01 00 5A 00 00 00 03 00"
    " 54 00 10 00 01 00 26 09 4B 00 22 00 03 00 1E 4A 05 00 00 0F 20 00 00 00 78 4A 06 00 00 0F"
    " 20 00 00 00 50 4A 07 00 00 0F 20 00 00 00 5D 00 11 00 01 00 0E 09 50 00 0A 41 82 00 00 0A"
    " A0 00 00 00 48 00 12 00 01 00 0E 09 50 00 0A 4B B8 00 00 02 20 00 00 00 62 F9 C8 C1"
)
V5_USER_DATA = hx("C1 7D E1 00 00 02 00 01 00 00 1F")
V5 = hx("C0 11 01 00 0B 7D E1 7D 5D E1 00 00 02 00 01 00 00 1F 7D E1 91 C1")
V5_PERSEUS = hx("C0 11 01 00 0B 7D E1 7D 5D E1 00 00 02 00 01 00 00 1F C1 91 C1")


def frames_of(data: bytes) -> list[bytes]:
    """User data of every good frame in ``data`` (asserts there are no bad ones)."""
    events = iv.Deframer().feed(data)
    assert all(e.payload is not None for e in events), [e.error for e in events]
    return [e.payload for e in events if e.payload is not None]


def key(r: Reading) -> tuple[Any, ...]:
    return (r.parameter, r.value, r.unit, r.mdc, r.device_time, r.quality, r.source)


# ---- helpers building monitor messages ---------------------------------------------------------
def mds_create(abs_time: datetime | None, rel: int, mode: int = iv.OPMODE_MONITORING) -> bytes:
    attrs = [
        (iv.ATTR_MODE_OP, struct.pack(">H", mode)),
        (iv.ATTR_TIME_ABS, iv.encode_abs_time(abs_time)),
        (iv.ATTR_TIME_REL, struct.pack(">I", rel)),
    ]
    return iv.encode_frame(iv.encode_mds_create_event(7, rel, attrs))


def nu(physio: int, unit: int, value: float | None, state: int = 0) -> iv.NuObsValue:
    return iv.NuObsValue(physio, state, unit, iv.encode_float(value))


def numerics(
    observations: list[tuple[int, list[iv.AVA]]],
    rel: int = 0,
    abs_raw: bytes = iv.ABS_TIME_INVALID,
) -> bytes:
    return iv.encode_frame(
        iv.encode_poll_reply(
            invoke_id=1,
            action_type=iv.ACT_POLL_EXT,
            poll_number=1,
            rel_time=rel,
            abs_time=abs_raw,
            observations=observations,
        )
    )


def nibp_obs(
    sys_: float | None,
    dia: float | None,
    mean: float | None,
    *,
    stamp: int | None = None,
    state: int = 0,
    unit: int = iv.NOM_DIM_MMHG,
) -> tuple[int, list[iv.AVA]]:
    attrs: list[iv.AVA] = [
        iv.encode_nu_compound(
            [
                nu(iv.NOM_PRESS_BLD_NONINV_SYS, unit, sys_, state),
                nu(iv.NOM_PRESS_BLD_NONINV_DIA, unit, dia, state),
                nu(iv.NOM_PRESS_BLD_NONINV_MEAN, unit, mean, state),
            ]
        )
    ]
    if stamp is not None:
        attrs.append((iv.ATTR_TIME_STAMP_REL, struct.pack(">I", stamp)))
    return (0x10, attrs)


def single(
    physio: int, unit: int, value: float | None, state: int = 0, handle: int = 0x20
) -> tuple[int, list[iv.AVA]]:
    return (handle, [iv.encode_nu_value(nu(physio, unit, value, state))])


class Cable:
    """Protocol and emulator on an in-memory cable, stepped on exact multiples of ``dt``.

    ``host_to_device``/``device_to_host`` switch each direction of the cable off and on.
    """

    def __init__(
        self,
        scenario: str = "stable",
        *,
        dt: float = 0.05,
        start_s: float = 0.0,
        proto: IntelliVueProtocol | None = None,
        **emu_kwargs: Any,
    ) -> None:
        self.emu = IntelliVueEmulator(get_scenario(scenario), device_epoch=EPOCH, **emu_kwargs)
        self.proto = proto or IntelliVueProtocol(source="cable")
        self.dt = dt
        self.k = round(start_s / dt)
        self.host_to_device = True
        self.device_to_host = True
        self.readings: list[tuple[float, Reading]] = []
        self.device_out: list[tuple[float, bytes]] = []
        self.host_out: list[tuple[float, bytes]] = []
        self.streaming_at: list[tuple[float, bool]] = []
        self.pending = self.proto.on_connect(self.now)

    @property
    def t(self) -> float:
        return self.k * self.dt

    @property
    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def step(self) -> None:
        t, now = self.t, self.now
        out = b""
        if self.pending:
            self.host_out.append((t, self.pending))
            if self.host_to_device:
                out += self.emu.on_host_bytes(self.pending, t)
        out += self.emu.tick(t)
        if out:
            self.device_out.append((t, out))
        if out and self.device_to_host:
            self.readings += [(t, r) for r in self.proto.feed(out, now)]
        self.streaming_at.append((t, self.proto.streaming))
        self.pending = self.proto.outgoing(now)
        self.k += 1

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / self.dt)):
            self.step()

    def params(self, since: float = 0.0) -> Counter[str]:
        return Counter(r.parameter for t, r in self.readings if t >= since)


# ---- registry and defaults ---------------------------------------------------------------------
def test_registered_with_the_device_defaults() -> None:
    assert protocol_class("intellivue") is IntelliVueProtocol
    assert emulator_class("intellivue") is IntelliVueEmulator
    s = IntelliVueProtocol.default_serial
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits, s.rtscts, s.xonxoff) == (
        115200,
        8,
        Parity.NONE,
        1,
        False,
        False,
    )


# ---- FCS ---------------------------------------------------------------------------------------
def test_fcs_check_value_and_residue() -> None:
    assert iv.crc16_x25(b"123456789") == 0x906E
    data = b"123456789"
    sent = data + iv.crc16_x25(data).to_bytes(2, "little")
    assert iv.fcs_update(sent) == iv.FCS_GOOD_RESIDUE == 0xF0B8


_X25 = crcmod.predefined.mkCrcFun("x-25")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_fcs_agrees_with_crcmod(data: bytes) -> None:
    assert iv.crc16_x25(data) == _X25(data)


# ---- V1–V5 -------------------------------------------------------------------------------------
def test_v1_extended_poll_request_is_encoded_byte_identically_and_parses() -> None:
    ours = iv.encode_frame(
        iv.encode_poll_request(
            1, 1, iv.MOC_NUMERIC, iv.GRP_ALL, extended=True, period_ticks=iv.rel_ticks(30.0)
        )
    )
    assert ours == V1
    (payload,) = frames_of(V1)
    op = iv.parse_remote_operation(payload)
    assert (op.ro_type, op.invoke_id, op.command) == (iv.ROIV, 1, iv.CMD_CONFIRMED_ACTION)
    req = iv.parse_poll_request(op.data)
    assert (req.action_type, req.poll_number, req.obj_code, req.attr_group) == (
        iv.ACT_POLL_EXT,
        1,
        iv.MOC_NUMERIC,
        iv.GRP_ALL,
    )
    assert req.period_ticks == 0x0003A980 == 30 * iv.TICKS_PER_S
    assert iv.rel_ticks(600.0) == 0x00493E00  # the 10-min period the protocol asks for


def test_v2_mds_create_event_result_is_encoded_byte_identically() -> None:
    assert iv.encode_frame(iv.encode_event_report_result(1, 0x000ABD00)) == V2


def test_v3_association_request_matches_the_stated_frame() -> None:
    profile = iv.PollProfile(min_poll_period=1000, ext_options=0x8C000000)
    user_data = iv.encode_association_request(profile)
    assert len(user_data) == 238
    assert user_data[:2] == hx("0D EC") and user_data[16] == 0xC1
    frame = iv.encode_frame(user_data)
    assert len(frame) == 247
    assert frame[:5] == hx("C0 11 01 00 EE")
    assert frame[21:23] == hx("7D E1")
    assert frame[-3:] == hx("81 E3 C1")
    assert frames_of(frame) == [user_data]
    spdu, parsed = iv.parse_association(user_data)
    assert spdu == iv.SPDU_CN and parsed == profile


def test_v3_is_accepted_by_the_emulator() -> None:
    emu = IntelliVueEmulator(get_scenario("stable"), device_epoch=EPOCH)
    v3 = iv.encode_frame(iv.encode_association_request(iv.PollProfile(ext_options=0x8C000000)))
    reply = frames_of(emu.on_host_bytes(v3, 1.0))
    assert [p[0] for p in reply] == [iv.SPDU_AC, iv.SPDU_DATA]
    assert emu.associated and emu.timeout_s == 10.0
    event = iv.parse_event_report(iv.parse_remote_operation(reply[1]).data)
    assert event.event_type == iv.NOTI_MDS_CREATE


V4_TIME = datetime(2025, 6, 10, 14, 30, tzinfo=UTC)
V4_EXPECTED = {
    ("nibp_sys", 120.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_SYS"),
    ("nibp_dia", 80.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_DIA"),
    ("nibp_mean", 93.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_MEAN"),
    ("hr", 72.0, "/min", "MDC_ECG_HEART_RATE"),
    ("spo2", 98.0, "%", "MDC_PULS_OXIM_SAT_O2"),
}


@pytest.mark.parametrize("connected", [False, True], ids=["passive-decode", "after-connect"])
def test_v4_poll_result_decodes_as_stated(connected: bool) -> None:
    p = IntelliVueProtocol(source="v4")
    if connected:
        p.on_connect(NOW)
    readings = p.feed(V4, NOW)
    assert {(r.parameter, r.value, r.unit, r.mdc) for r in readings} == V4_EXPECTED
    assert len(readings) == 5
    for r in readings:
        # no MDS baseline yet, so the reply's absolute time is the device time
        assert r.device_time == V4_TIME
        assert r.host_time == NOW and r.source == "v4" and r.quality is Quality.NONE
    assert (p.stats.frames_ok, p.stats.frames_bad, p.stats.readings) == (1, 0, 5)
    reply = iv.parse_poll_reply(*iv.parse_action_result(iv.parse_remote_operation(V4[5:-3]).data))
    assert reply.rel_time == 0x00123456
    assert p.streaming is False  # data alone is not an association


def test_v4_is_re_created_by_the_emulator_encoder() -> None:
    obs = [
        nibp_obs(120, 80, 93),
        single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, 72, handle=0x11),
        single(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_PERCENT, 98, handle=0x12),
    ]
    frame = iv.encode_frame(
        iv.encode_poll_reply(
            invoke_id=1,
            action_type=iv.ACT_POLL_EXT,
            poll_number=1,
            sequence_number=1,
            rel_time=0x00123456,
            abs_time=iv.encode_abs_time(V4_TIME),
            observations=obs,
        )
    )
    assert frame == V4


def test_v5_fcs_is_escaped_and_the_correct_frame_is_accepted() -> None:
    assert iv.encode_frame(V5_USER_DATA) == V5
    assert frames_of(V5) == [V5_USER_DATA]
    # not a valid message: counted as a bad frame, nothing raised, nothing read
    p = IntelliVueProtocol()
    assert p.feed(V5, NOW) == []
    assert p.stats.frames_bad == 1 and "session id 0xC1" in p.stats.last_error
    # PERSEUS's writer leaves the FCS unescaped: the C1 inside it ends the frame early
    events = iv.Deframer().feed(V5_PERSEUS)
    assert [e.payload for e in events] == [None]


# ---- framing details ---------------------------------------------------------------------------
def test_escape_byte_split_across_reads() -> None:
    cut = V5.index(0x7D) + 1  # right after the first escape byte
    d = iv.Deframer()
    assert d.feed(V5[:cut]) == []
    assert [e.payload for e in d.feed(V5[cut:])] == [V5_USER_DATA]


def test_frame_abort_and_start_flag_inside_a_frame() -> None:
    d = iv.Deframer()
    aborted = V4[:40] + hx("7D C1")
    events = d.feed(aborted + V4)
    assert [e.payload is None for e in events] == [True, False]
    assert "7D C1" in events[0].error
    events = d.feed(V4[:60] + V4)  # a C0 inside a frame restarts framing
    assert [e.payload is None for e in events] == [True, False]
    assert "start flag" in events[0].error
    events = d.feed(b"\x11\x22" + V4[:30] + b"\x7d" + V4)  # escape then C0: abort + new frame
    assert [e.payload is None for e in events] == [True, False]


def test_overlong_frame_is_dropped_and_framing_recovers() -> None:
    d = iv.Deframer(max_frame_bytes=200)
    events = d.feed(b"\xc0" + b"\x01" * 300 + V4)
    assert [e.payload is None for e in events] == [True, False]


# ---- FLOAT-Type --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (0x00000048, 72.0),
        (0xFF0003D9, 98.5),  # 985 × 10^-1
        (0xFE002EE0, 120.0),  # 12000 × 10^-2
        (0x00FFFF9C, -100.0),  # negative mantissa
        (0x0200000C, 1200.0),  # positive exponent
        (0xFDFFFFFF, -0.001),
    ],
)
def test_float_type_decoding(raw: int, value: float) -> None:
    assert iv.decode_float(raw) == pytest.approx(value)


@pytest.mark.parametrize(
    "raw", [iv.FLOAT_NAN, iv.FLOAT_NRES, iv.FLOAT_POS_INF, iv.FLOAT_NEG_INF, iv.FLOAT_RESERVED]
)
def test_float_specials_have_no_value(raw: int) -> None:
    assert iv.decode_float(raw) is None and iv.float_special(raw) is not None


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=-800_000, max_value=800_000), st.integers(0, 3))
def test_float_round_trip(mantissa: int, decimals: int) -> None:
    value = mantissa / 10**decimals
    assert iv.decode_float(iv.encode_float(value)) == pytest.approx(value, abs=1e-9)


def test_special_values_and_unavailable_are_skipped_invalid_numbers_flagged() -> None:
    p = IntelliVueProtocol()
    frame = numerics(
        [
            single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, None, handle=1),  # NaN
            single(iv.NOM_PLETH_PULS_RATE, iv.NOM_DIM_BEAT_PER_MIN, 70, iv.MS_UNAVAILABLE, 2),
            single(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_PERCENT, 97, iv.MS_INVALID, handle=3),
            (4, [iv.encode_nu_value(iv.NuObsValue(iv.NOM_RESP_RATE, 0, 0x0AE0, iv.FLOAT_NRES))]),
        ]
    )
    readings = p.feed(frame, NOW)
    assert [(r.parameter, r.value, r.quality) for r in readings] == [
        ("spo2", 97.0, Quality.INVALID)
    ]


@pytest.mark.parametrize(
    ("state", "flags"),
    [
        (0, Quality.NONE),
        (iv.MS_INVALID, Quality.INVALID),
        (iv.MS_QUESTIONABLE, Quality.QUESTIONABLE),
        (iv.MS_CALIBRATION_ONGOING, Quality.CALIBRATION),
        (iv.MS_TEST_DATA, Quality.TEST),
        (iv.MS_DEMO_DATA, Quality.DEMO),
        (iv.MS_DEMO_DATA | iv.MS_QUESTIONABLE, Quality.DEMO | Quality.QUESTIONABLE),
        (iv.MS_VALIDATED | iv.MS_IN_ALARM | iv.MS_EARLY_INDICATION, Quality.NONE),
    ],
)
def test_measurement_state_bits_become_quality_flags(state: int, flags: Quality) -> None:
    assert quality_from_state(state) == flags
    p = IntelliVueProtocol()
    (r,) = p.feed(numerics([single(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_PERCENT, 95, state)]), NOW)
    assert r.quality == flags


@pytest.mark.parametrize(
    ("mode", "flags"),
    [(iv.OPMODE_MONITORING, Quality.NONE), (iv.OPMODE_DEMO, Quality.DEMO), (0x1000, Quality.TEST)],
)
def test_mds_operating_mode_marks_every_value(mode: int, flags: Quality) -> None:
    p = IntelliVueProtocol()
    p.feed(mds_create(NOW, 1000, mode), NOW)
    (r,) = p.feed(numerics([single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, 60)]), NOW)
    assert r.quality == flags


def test_demo_monitor_end_to_end_on_the_cable() -> None:
    cable = Cable(demo=True)
    cable.run(3.0)
    assert cable.readings and all(r.quality & Quality.DEMO for _, r in cable.readings)


def test_units_are_converted_and_unknown_units_skipped() -> None:
    p = IntelliVueProtocol()
    readings = p.feed(
        numerics(
            [
                nibp_obs(16.0, 10.6, 12.4, stamp=5, unit=iv.NOM_DIM_KILO_PASCAL),
                single(iv.NOM_TEMP, iv.NOM_DIM_FAHR, 98.6, handle=0x21),
                single(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_MMHG, 98, handle=0x22),  # nonsense
            ]
        ),
        NOW,
    )
    got = {r.parameter: (r.value, r.unit) for r in readings}
    assert got == {
        "nibp_sys": (120.01, "mm[Hg]"),
        "nibp_dia": (79.51, "mm[Hg]"),
        "nibp_mean": (93.01, "mm[Hg]"),
        "temp": (37.0, "Cel"),
    }
    assert p.counters.unit_mismatches == 1


def test_the_cuff_pulse_rate_comes_out_as_pulse_rate_from_the_cuff() -> None:
    p = IntelliVueProtocol()
    readings = p.feed(
        numerics(
            [single(iv.NOM_PRESS_BLD_NONINV_PULS_RATE, iv.NOM_DIM_BEAT_PER_MIN, 71, handle=3)]
        ),
        NOW,
    )
    assert [(r.parameter, r.value, r.unit, r.origin) for r in readings] == [
        ("pr", 71.0, "/min", "cuff")
    ]


def test_impedance_and_airway_rr_both_come_out_with_their_origin() -> None:
    # issue 16: each reading names its source; the chair's [sources] setting picks the charted one
    p = IntelliVueProtocol()
    readings = p.feed(
        numerics(
            [
                single(iv.NOM_RESP_RATE, iv.NOM_DIM_RESP_PER_MIN, 14, handle=1),
                single(iv.NOM_AWAY_RESP_RATE, iv.NOM_DIM_RESP_PER_MIN, 12, handle=2),
            ]
        ),
        NOW,
    )
    assert [(r.parameter, r.value, r.mdc, r.origin) for r in readings] == [
        ("rr", 14.0, "MDC_RESP_RATE", "impedance"),
        ("rr", 12.0, "MDC_AWAY_RESP_RATE", "airway"),
    ]


def test_device_time_stays_monotonic_over_many_days_and_wraps() -> None:
    # issue 16: the 32-bit relative time (1/8 ms) wraps every ~6.2 days; a poll every 12 h for
    # 14 days crosses two wraps and passes the half-period (3.1 days) where a difference taken
    # from the baseline alone turns negative.
    p = IntelliVueProtocol()
    base = iv.REL_TIME_MOD - 5 * iv.TICKS_PER_S  # 5 s before the first wrap
    p.feed(mds_create(V4_TIME, base), NOW)
    times = []
    for half_days in range(29):
        rel = (base + half_days * 12 * 3600 * iv.TICKS_PER_S) % iv.REL_TIME_MOD
        (r,) = p.feed(
            numerics([single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, 61)], rel=rel),
            NOW,
        )
        assert r.device_time == V4_TIME + timedelta(hours=12 * half_days)
        times.append(r.device_time)
    assert times == sorted(times) and len(set(times)) == len(times)


# ---- NIBP is episodic --------------------------------------------------------------------------
def _nibp(readings: list[Reading]) -> list[tuple[str, float]]:
    return [(r.parameter, r.value) for r in readings if r.parameter.startswith("nibp")]


def test_nibp_is_emitted_once_per_cuff_measurement() -> None:
    p = IntelliVueProtocol()
    base = 80_000
    p.feed(mds_create(NOW, base), NOW)
    first = p.feed(numerics([nibp_obs(120, 80, 93, stamp=base + 8000)], rel=base + 16_000), NOW)
    assert _nibp(first) == [("nibp_sys", 120.0), ("nibp_dia", 80.0), ("nibp_mean", 93.0)]
    # the cuff reading is measured at its own stamp, not at the poll's time
    assert {r.device_time for r in first} == {NOW + timedelta(seconds=1)}
    for k in range(5):  # the same cycle repeated in every poll result
        assert (
            p.feed(numerics([nibp_obs(120, 80, 93, stamp=base + 8000)], rel=base + k), NOW) == []
        )
    # inflating: results flagged "measurement ongoing" are not a new cycle yet
    ongoing = nibp_obs(120, 80, 93, stamp=base + 9000, state=iv.MS_MSMT_ONGOING)
    assert p.feed(numerics([ongoing]), NOW) == []
    # a new cycle with identical values is still new (its stamp changed)
    again = p.feed(numerics([nibp_obs(120, 80, 93, stamp=base + 2_400_000)]), NOW)
    assert len(_nibp(again)) == 3
    assert {r.device_time for r in again} == {NOW + timedelta(seconds=300)}


def test_nibp_without_timestamps_uses_a_change_of_values() -> None:
    p = IntelliVueProtocol()
    assert _nibp(p.feed(numerics([nibp_obs(None, None, None)]), NOW)) == []  # nothing measured
    assert len(_nibp(p.feed(numerics([nibp_obs(118, 76, 90)]), NOW))) == 3
    assert _nibp(p.feed(numerics([nibp_obs(118, 76, 90)]), NOW)) == []
    assert _nibp(p.feed(numerics([nibp_obs(121, 76, 91)]), NOW)) == [
        ("nibp_sys", 121.0),
        ("nibp_dia", 76.0),
        ("nibp_mean", 91.0),
    ]


def test_nibp_is_not_repeated_after_a_reconnect() -> None:
    p = IntelliVueProtocol()
    frame = numerics([nibp_obs(120, 80, 93, stamp=4242)])
    assert len(p.feed(frame, NOW)) == 3
    p.reset()
    p.on_connect(NOW)
    assert p.feed(frame, NOW) == []


# ---- device time -------------------------------------------------------------------------------
@pytest.mark.parametrize("base_rel", [123_456, iv.REL_TIME_MOD - 8000], ids=["plain", "wrapping"])
def test_relative_time_is_anchored_to_the_mds_baseline(base_rel: int) -> None:
    p = IntelliVueProtocol()
    p.feed(mds_create(V4_TIME, base_rel), NOW)
    assert p.baseline == (V4_TIME, base_rel)
    rel = (base_rel + 5 * iv.TICKS_PER_S + 4) % iv.REL_TIME_MOD  # 5.0005 s later, maybe wrapped
    # the reply's own absolute time is garbage here: the baseline wins
    (r,) = p.feed(
        numerics(
            [single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, 61)],
            rel=rel,
            abs_raw=iv.encode_abs_time(datetime(2001, 1, 1, tzinfo=UTC)),
        ),
        NOW,
    )
    assert r.device_time == V4_TIME + timedelta(seconds=5, microseconds=500)


def test_without_any_clock_device_time_is_none() -> None:
    p = IntelliVueProtocol()
    (r,) = p.feed(numerics([single(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN, 61)]), NOW)
    assert r.device_time is None and r.host_time == NOW


def test_device_time_follows_the_emulated_clock_across_a_counter_wrap() -> None:
    # switched on 6.2 days minus 20 s ago: the 32-bit relative time wraps during the run
    cable = Cable(uptime_s=iv.REL_TIME_MOD / iv.TICKS_PER_S - 20.0)
    cable.run(40.0)
    for t, r in cable.readings:
        if r.parameter == "hr":
            assert r.device_time is not None
            assert abs((r.device_time - (EPOCH + timedelta(seconds=t))).total_seconds()) < 0.001


# ---- the session: association, MDS create, polls, keep-alive -----------------------------------
def _kinds(data: bytes) -> list[str]:
    """Rough names of the host's messages, for timer tests."""
    out = []
    for p in frames_of(data):
        if p[0] != iv.SPDU_DATA:
            out.append({iv.SPDU_CN: "AARQ", iv.SPDU_AB: "ABORT"}.get(p[0], hex(p[0])))
            continue
        op = iv.parse_remote_operation(p)
        if op.ro_type == iv.RORS:
            out.append("MDS-RESULT")
        else:
            req = iv.parse_poll_request(op.data)
            out.append("EXT-POLL" if req.action_type == iv.ACT_POLL_EXT else "KEEPALIVE")
    return out


def test_association_request_is_repeated_every_2_s_until_accepted() -> None:
    p = IntelliVueProtocol()
    assert _kinds(p.on_connect(NOW)) == ["ABORT", "AARQ"]
    assert p.outgoing(NOW + timedelta(seconds=1.9)) == b""
    assert _kinds(p.outgoing(NOW + timedelta(seconds=2.0))) == ["AARQ"]
    assert p.outgoing(NOW + timedelta(seconds=3.0)) == b""
    assert _kinds(p.outgoing(NOW + timedelta(seconds=4.0))) == ["AARQ"]
    assert p.phase == "associating" and not p.streaming


def test_mds_create_is_answered_then_numerics_are_polled() -> None:
    p = IntelliVueProtocol()
    p.on_connect(NOW)
    server = iv.PollProfile(system_type=iv.SYST_SERVER)
    p.feed(iv.encode_frame(iv.encode_association_response(server)), NOW)
    assert p.phase == "associated"
    p.feed(mds_create(NOW, 99), NOW)
    out = p.outgoing(NOW)
    assert _kinds(out) == ["MDS-RESULT", "EXT-POLL"]
    result, poll = frames_of(out)
    op = iv.parse_remote_operation(result)
    assert op.invoke_id == 7  # echoes the event's invoke id
    req = iv.parse_poll_request(iv.parse_remote_operation(poll).data)
    assert (req.obj_code, req.period_ticks) == (iv.MOC_NUMERIC, 0x00493E00)
    assert p.phase == "operating"


def test_refusal_aborts_the_stale_association_and_retries() -> None:
    p = IntelliVueProtocol()
    p.on_connect(NOW)
    p.feed(iv.encode_frame(iv.encode_refuse()), NOW)
    assert _kinds(p.outgoing(NOW)) == ["ABORT"]
    assert _kinds(p.outgoing(NOW + timedelta(seconds=2))) == ["AARQ"]
    assert p.counters.refusals == 1


def test_stays_streaming_for_20_s_with_keepalives() -> None:
    cable = Cable()
    cable.run(20.0)
    assert cable.emu.timeouts == 0 and cable.emu.associated
    assert all(s for t, s in cable.streaming_at if t >= 0.5)
    assert cable.proto.counters.keepalives >= 2
    assert cable.proto.counters.associations == 1
    assert cable.params(since=19.0)["hr"] == 1  # still one result a second at the end
    # the host never stays silent as long as the monitor's time-out
    sent = [t for t, _ in cable.host_out]
    assert max(b - a for a, b in itertools.pairwise(sent)) <= 8.05
    kinds = Counter(k for _, data in cable.host_out for k in _kinds(data))
    assert kinds["AARQ"] == 1 and kinds["EXT-POLL"] == 1 and kinds["KEEPALIVE"] >= 2


def test_extended_poll_is_renewed_before_its_period_ends() -> None:
    cable = Cable(dt=0.1)
    cable.run(660.0)
    assert cable.proto.counters.polls_requested == 2
    assert cable.emu.polling and cable.params(since=650.0)["hr"] >= 9


def test_without_keepalives_the_monitor_drops_the_host_which_recovers() -> None:
    cable = Cable(proto=IntelliVueProtocol(keepalive=False))
    cable.run(30.0)
    assert cable.emu.timeouts >= 1
    assert cable.proto.counters.aborts_received >= 1
    assert cable.proto.counters.associations >= 2
    assert cable.params(since=25.0)["hr"] >= 4  # data flows again after re-association


def test_host_renegotiates_after_5_s_of_silence() -> None:
    cable = Cable()
    cable.run(5.0)
    cable.device_to_host = cable.host_to_device = False  # cable cut both ways
    cable.run(6.0)
    assert cable.proto.counters.renegotiations == 1 and cable.proto.phase == "associating"
    cable.device_to_host = cable.host_to_device = True
    cable.run(15.0)
    assert cable.proto.streaming and cable.params(since=24.0)["hr"] >= 1


# ---- the emulator behaves like the monitor -----------------------------------------------------
def test_emulator_is_silent_until_associated() -> None:
    emu = IntelliVueEmulator(get_scenario("artifact"), device_epoch=EPOCH)
    poll = iv.encode_frame(iv.encode_poll_request(1, 1, iv.MOC_NUMERIC, 0, extended=False))
    assert emu.on_host_bytes(poll + b"\x00\xc0garbage\xc1", 0.0) == b""
    assert all(emu.tick(k * 0.05) == b"" for k in range(600))


def test_emulator_ignores_polls_until_the_mds_create_is_answered() -> None:
    emu = IntelliVueEmulator(get_scenario("stable"), device_epoch=EPOCH)
    aarq = iv.encode_frame(iv.encode_association_request(iv.PollProfile()))
    emu.on_host_bytes(aarq, 1.0)
    poll = iv.encode_frame(
        iv.encode_poll_request(1, 1, iv.MOC_NUMERIC, 0, extended=True, period_ticks=8000 * 60)
    )
    assert emu.on_host_bytes(poll, 1.1) == b""
    assert [p[0] for p in frames_of(emu.tick(6.5))] == [iv.SPDU_DATA]  # MDS create repeated
    result = iv.encode_frame(iv.encode_event_report_result(1, 0))
    assert frames_of(emu.on_host_bytes(result + poll, 7.0))  # now answered at once
    assert emu.polling


def test_emulator_refuses_a_second_association_and_honours_abort() -> None:
    emu = IntelliVueEmulator(get_scenario("stable"), device_epoch=EPOCH)
    aarq = iv.encode_frame(iv.encode_association_request(iv.PollProfile()))
    emu.on_host_bytes(aarq, 0.0)
    assert [p[0] for p in frames_of(emu.on_host_bytes(aarq, 0.5))] == [iv.SPDU_RF]
    emu.on_host_bytes(iv.encode_frame(iv.encode_abort()), 1.0)
    assert not emu.associated
    assert [p[0] for p in frames_of(emu.on_host_bytes(aarq, 1.5))] == [iv.SPDU_AC, iv.SPDU_DATA]


@pytest.mark.parametrize(
    ("ticks", "timeout"), [(1000, 10.0), (8000 * 5, 15.0), (8000 * 60, 130.0)]
)
def test_emulator_timeout_follows_the_min_poll_period(ticks: int, timeout: float) -> None:
    assert timeout_for_min_poll_period(ticks) == timeout


def test_emulator_stops_when_keepalives_are_withheld() -> None:
    cable = Cable()
    cable.run(3.0)
    cable.host_to_device = False
    last_heard = max(t for t, _ in cable.host_out if t < 3.0)
    cable.run(25.0)
    after = [(t, d) for t, d in cable.device_out if t > 3.0]
    assert after, "the monitor kept sending for its time-out"
    last_t, last_data = after[-1]
    assert last_heard + 10.0 < last_t <= last_heard + 10.0 + 0.06
    assert frames_of(last_data)[-1][0] == iv.SPDU_AB  # it aborted, then fell silent
    assert max(t for t, _ in after[:-1]) <= last_heard + 10.0
    assert cable.emu.timeouts == 1 and not cable.emu.associated


def test_emulator_reassociates_after_reset() -> None:
    cable = Cable()
    cable.run(3.0)
    cable.emu.reset()  # cable re-plugged on the monitor side
    cable.proto.reset()
    cable.pending = cable.proto.on_connect(cable.now)
    cable.run(3.0)
    assert cable.emu.associations == 2 and cable.proto.streaming
    assert cable.params(since=4.5)["hr"] >= 1


# ---- fuzzing -----------------------------------------------------------------------------------
def _session_stream() -> bytes:
    """A realistic monitor→host byte stream: accept, MDS create, linked poll results incl. NIBP,
    an artifact burst and a corrupted frame."""
    emu = IntelliVueEmulator(get_scenario("artifact"), device_epoch=EPOCH)
    out = emu.on_host_bytes(iv.encode_frame(iv.encode_association_request(iv.PollProfile())), 40.0)
    result = iv.encode_frame(iv.encode_event_report_result(1, 0))
    poll = iv.encode_frame(
        iv.encode_poll_request(1, 1, iv.MOC_NUMERIC, 0, extended=True, period_ticks=8000 * 600)
    )
    out += emu.on_host_bytes(result + poll, 40.5)
    for t in (41.5, 42.5):  # the artifact window [42, 43) adds garbage and a corrupt frame
        out += emu.tick(t)
    out += emu.tick(43.5)
    return out


STREAM = _session_stream()
REFERENCE = IntelliVueProtocol(source="fuzz")
REFERENCE.on_connect(NOW)
EXPECTED = [key(r) for r in REFERENCE.feed(STREAM, NOW)]


def test_reference_stream_is_what_the_fuzz_tests_assume() -> None:
    assert {k[0] for k in EXPECTED} >= {"nibp_sys", "nibp_dia", "nibp_mean", "hr", "spo2", "rr"}
    assert REFERENCE.stats.frames_bad >= 2  # garbage frame start + corrupted frame


def _feed_chunks(chunks: list[bytes]) -> list[tuple[Any, ...]]:
    p = IntelliVueProtocol(source="fuzz")
    p.on_connect(NOW)
    out: list[tuple[Any, ...]] = []
    for i, c in enumerate(chunks):
        out += [key(r) for r in p.feed(c, NOW + timedelta(milliseconds=i))]
    return out


def test_every_single_split_point_gives_the_same_readings() -> None:
    for cut in range(len(STREAM) + 1):
        assert _feed_chunks([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_random_splits_give_the_same_readings(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert _feed_chunks([STREAM[a:b] for a, b in itertools.pairwise(points)]) == EXPECTED


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    p = IntelliVueProtocol()
    p.on_connect(NOW)
    p.feed(data, NOW)
    p.feed(data + V4[:20], NOW)
    p.outgoing(NOW + timedelta(seconds=10))


GOOD_FRAMES = [V4, *(iv.encode_frame(e.payload) for e in iv.Deframer().feed(STREAM) if e.payload)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_flipped_byte_never_yields_a_reading(data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(GOOD_FRAMES))
    pos = data.draw(st.integers(1, len(frame) - 2))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[pos]))
    damaged = frame[:pos] + bytes((new,)) + frame[pos + 1 :]
    p = IntelliVueProtocol()
    assert p.feed(damaged, NOW) == []
    assert p.stats.frames_bad >= 1 and p.stats.frames_ok == 0


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_valid_frames_with_random_fields_never_raise(data: st.DataObject) -> None:
    """Structurally wrong messages with a good FCS are counted, never raised."""
    payload = data.draw(
        st.one_of(
            st.binary(max_size=80),
            st.builds(lambda tail: hx("E1 00 00 02 00 02") + tail, st.binary(max_size=80)),
            st.builds(lambda n: V4[5:-3][:n], st.integers(0, len(V4) - 8)),
        )
    )
    p = IntelliVueProtocol()
    p.on_connect(NOW)
    p.feed(iv.encode_frame(payload), NOW)
    assert p.stats.frames_ok + p.stats.frames_bad == 1


# ---- loopback against the scenario -------------------------------------------------------------
def _check_against_scenario(name: str, seconds: float) -> list[Reading]:
    sc = get_scenario(name)
    res = run_loopback("intellivue", sc, seconds)
    cycles = sc.cuff_index_at(seconds - 0.05) + 1
    counts = Counter(r.parameter for r in res.readings)
    for p in ("nibp_sys", "nibp_dia", "nibp_mean"):
        assert counts[p] == cycles, (p, counts)
    cuffs = [sc.cuff(i) for i in range(cycles)]
    for param, attr in (("nibp_sys", "sys"), ("nibp_dia", "dia"), ("nibp_mean", "mean")):
        got = [(r.value, r.device_time) for r in res.readings if r.parameter == param]
        assert got == [
            (getattr(c, attr), datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(seconds=c.t_s))
            for c in cuffs
        ]
    epoch = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    for r in res.readings:
        assert r.unit == {"spo2": "%", "hr": "/min", "pr": "/min", "rr": "/min"}.get(
            r.parameter, "mm[Hg]"
        )
        if r.parameter.startswith("nibp"):
            continue
        assert r.device_time is not None
        # device clock == host clock in the loopback, so both name the same instant
        assert abs((r.device_time - r.host_time).total_seconds()) < 0.001
        t = round((r.device_time - epoch).total_seconds() / 0.05) * 0.05
        assert r.value == getattr(sc.vitals(t), r.parameter), (r, t)
    return res.readings


def test_loopback_stable_matches_the_scenario() -> None:
    readings = _check_against_scenario("stable", 700.0)
    counts = Counter(r.parameter for r in readings)
    assert counts["hr"] == counts["spo2"] == counts["rr"] == counts["pr"] == 700
    assert all(r.quality is Quality.NONE for r in readings)


def test_loopback_artifact_still_reads_correctly_and_counts_bad_frames() -> None:
    readings = _check_against_scenario("artifact", 700.0)
    counts = Counter(r.parameter for r in readings)
    assert 600 < counts["hr"] < 700  # results in corrupted frames are lost, never misread
    flagged = Counter((r.parameter, r.quality) for r in readings if r.quality)
    assert flagged[("spo2", Quality.QUESTIONABLE)] > 0 and flagged[("rr", Quality.INVALID)] > 0
    # and the protocol counted what the emulator spoiled
    p = IntelliVueProtocol()
    p.feed(run_loopback("intellivue", get_scenario("artifact"), 100.0).device_to_host, NOW)
    assert p.stats.frames_bad >= 2 * 14  # garbage frame + corrupt frame per 7-s window


def test_loopback_recovers_after_a_silent_monitor() -> None:
    sc = get_scenario("silent")  # silent 60–90 s
    res = run_loopback("intellivue", sc, 120.0)
    times = sorted(
        (r.host_time - datetime(2026, 1, 5, 9, 0, tzinfo=UTC)).total_seconds()
        for r in res.readings
        if r.parameter == "hr"
    )
    assert max(times) > 110.0
    resumed = min(t for t in times if t >= 60.0)
    assert 90.0 <= resumed < 96.0


# ---- end to end on a real pty ------------------------------------------------------------------
def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class _FastWatchdog(IntelliVueProtocol):
    quiet_time_s = 1.5


@pytest.mark.pty
@pytest.mark.slow
def test_end_to_end_on_a_pty(tmp_path: Path) -> None:
    emu = IntelliVueEmulator(get_scenario("stable"))
    link = tmp_path / "monitor"
    server = PtyServer(emu, speed=1.0, link=link, start_at_s=40.0).start()
    proto = _FastWatchdog(source="e2e")
    events: list[StatusEvent] = []
    readings: list[Reading] = []
    sup = Supervisor(
        SerialTransport(str(link), _FastWatchdog.default_serial),
        proto,
        on_readings=readings.extend,
        on_status=events.append,
        backoff_s=(0.1, 0.4),
    )
    thread = threading.Thread(target=sup.run, name="intellivue-e2e", daemon=True)

    def streaming_after(n_events: int, n_readings: int) -> Callable[[], bool]:
        return lambda: (
            any(e.state is LinkState.STREAMING for e in events[n_events:])
            and sum(r.parameter == "hr" for r in readings[n_readings:]) >= 2
        )

    thread.start()
    try:
        _wait(streaming_after(0, 0), 5.0, "first STREAMING")
        states = [e.state for e in events]
        assert states[:3] == [LinkState.CONNECTING, LinkState.NEGOTIATING, LinkState.STREAMING]

        # pull the cable for about a second
        mark_e = len(events)
        server.force_link(Link.PULLED)
        _wait(
            lambda: any(
                e.state is LinkState.CONNECTING and "link lost" in e.reason
                for e in events[mark_e:]
            ),
            3.0,
            "link lost",
        )
        time.sleep(1.0)
        server.force_link(None)
        mark_r = len(readings)
        _wait(streaming_after(mark_e + 1, mark_r), 6.0, "STREAMING after the cable came back")

        # a monitor that stays connected but says nothing trips the watchdog
        mark_e = len(events)
        server.force_link(Link.SILENT)
        _wait(
            lambda: any(
                e.state is LinkState.NEGOTIATING and "no data" in e.reason for e in events[mark_e:]
            ),
            4.0,
            "watchdog",
        )
        server.force_link(None)
        mark_r = len(readings)
        _wait(streaming_after(mark_e + 1, mark_r), 9.0, "STREAMING after the silence")

        # the cuff reading shown all along was reported once, not once per connection
        assert Counter(r.parameter for r in readings if r.parameter.startswith("nibp")) == {
            "nibp_sys": 1,
            "nibp_dia": 1,
            "nibp_mean": 1,
        }
        assert emu.associations >= 3
    finally:
        sup.stop()
        thread.join(timeout=5.0)
        server.stop()
    assert not thread.is_alive()
