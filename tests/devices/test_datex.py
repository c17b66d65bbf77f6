"""GE Datex-Ohmeda S/5 Computer Interface: vectors (devices.md §2.2), decoding rules, fuzzing,
loopback against the emulator, and end to end on a pseudo-terminal."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.emulators.base import PtyServer
from devices.emulators.datex import DatexEmulator
from devices.loopback import run_loopback
from devices.protocols import _datex_codec as dx
from devices.protocols import protocol_class
from devices.protocols.base import Parity
from devices.protocols.datex import DatexProtocol
from devices.readings import Quality, Reading
from devices.scenarios import Link, get_scenario
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import SerialTransport

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
INV = dx.DATA_INVALID


def h(text: str) -> bytes:
    return bytes.fromhex(" ".join(text.split()))


def key(r: Reading) -> tuple[object, ...]:
    return (r.parameter, r.value, r.unit, r.mdc, r.device_time, r.quality, r.source)


def by_param(readings: list[Reading]) -> dict[str, list[Reading]]:
    out: dict[str, list[Reading]] = {}
    for r in readings:
        out.setdefault(r.parameter, []).append(r)
    return out


# ---- devices.md §2.2 vectors ------------------------------------------------------------------
PHDB_REQUEST_10S = h(
    """
    7E 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 FF 00 00 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00 00 01 0A 00 00 00 00 00 00 00 3B 7E
    """
)
SYNTH_PREFIX = h("7E 3E 01 00 0A 00 00 68 41 48 68 00 00 00 00 00 00 00 00 01 00 00 FF")
SYNTH_NIBP_GROUP = h("03 00 00 00 00 00 E0 2E 40 1F 54 24 48 00")
SYNTH_SPO2_GROUP = h("03 00 00 00 00 00 48 26 48 00 5E 01 01 80")
SYNTH_TIME = 1749565800


def synthetic_groups() -> dict[str, dx.Group]:
    """The doc's synthetic displayed-values record: HR 72, NIBP 120/80/93 (+ hr 72),
    SpO2 98 % / pr 72 / ir_amp 350, unused ECG/P/T fields -32767, everything else zero."""
    groups = {n: dx.absent_group(n) for n in ("p1", "p2", "p3", "p4", "t1", "t2", "t3", "t4")}
    groups["ecg"] = dx.Group(3, 0, (72, INV, INV, INV, INV))
    groups["nibp"] = dx.Group(3, 0, (12000, 8000, 9300, 72))
    groups["spo2"] = dx.Group(3, 0, (9800, 72, 350, INV))
    return groups


def synthetic_record_by_hand() -> bytes:
    """The same record built straight from the §2.2 struct description, without the codec."""
    hdr = struct.pack("<hBBHIBBHh", 318, 0, 10, 0, SYNTH_TIME, 0, 0, 0, 0)
    hdr += struct.pack("<hB", 0, 1) + struct.pack("<hB", 0, 0xFF) + bytes(18)
    body = bytearray(270)
    struct.pack_into("<IH5h", body, 0, 3, 0, 72, INV, INV, INV, INV)
    for off in (16, 30, 44, 58):
        struct.pack_into("<IH4h", body, off, 0, 0, INV, INV, INV, INV)
    struct.pack_into("<IH4h", body, 72, 3, 0, 12000, 8000, 9300, 72)
    for off in (86, 94, 102, 110):
        struct.pack_into("<IHh", body, off, 0, 0, INV)
    struct.pack_into("<IH4h", body, 118, 3, 0, 9800, 72, 350, INV)
    sub = struct.pack("<I", SYNTH_TIME) + bytes(body) + struct.pack("<BBH", 0, 0, 0)
    return hdr + sub


def test_phdb_request_vector_10s() -> None:
    rec = dx.encode_phdb_request(dx.PhdbRequest(dx.SR_DISPLAYED, 10, dx.REQ_BASIC))
    assert len(rec) == 49
    assert dx.checksum(rec) == 0x3B
    assert dx.frame(rec) == PHDB_REQUEST_10S
    assert DatexProtocol(interval_s=10).request_bytes() == PHDB_REQUEST_10S


def test_phdb_request_vectors_show_escaping() -> None:
    f126 = dx.frame(dx.encode_phdb_request(dx.PhdbRequest(1, 126)))
    assert f126.endswith(h("00 01 7D 5E 00 00 00 00 00 00 00 AF 7E"))
    assert f126[:42] == PHDB_REQUEST_10S[:42] and len(f126) == len(PHDB_REQUEST_10S) + 1
    f125 = dx.frame(dx.encode_phdb_request(dx.PhdbRequest(1, 125)))
    assert f125.endswith(h("00 01 7D 5D 00 00 00 00 00 00 00 AE 7E"))
    # And the receiver undoes it.
    for f, ival in ((f126, 126), (f125, 125)):
        (res,) = dx.Deframer().feed(f)
        assert res.record is not None
        reqs, err = dx.parse_phdb_requests(res.record)
        assert not err and reqs == [dx.PhdbRequest(1, ival, 0)]


def test_flawed_transmit_checksum_is_rejected() -> None:
    """VSCapture/icu_devices sum the escaped pair on transmit; per spec that is a bad frame."""
    rec = dx.encode_phdb_request(dx.PhdbRequest(1, 126))
    flawed_sum = (sum(rec) - 0x7E + 0x7D + 0x5E) & 0xFF
    assert flawed_sum != dx.checksum(rec)
    bad = dx.frame(rec, checksum_byte=flawed_sum)
    emu = DatexEmulator(get_scenario("stable"), device_epoch=NOW)
    assert emu.on_host_bytes(bad, 0.0) == b""
    assert emu.tick(0.0) == b""  # not started
    assert emu.rejected and "checksum" in emu.rejected[0]
    # The same request with the spec checksum starts the stream.
    emu.on_host_bytes(dx.frame(rec), 0.0)
    assert emu.tick(0.0).startswith(b"\x7e")


def test_synthetic_displayed_record_vector() -> None:
    rec = dx.DisplayedRecord(r_time=SYNTH_TIME, groups=synthetic_groups()).encode()
    assert rec == synthetic_record_by_hand()
    wire = dx.frame(rec)
    assert len(rec) == 318 and len(wire) == 321
    assert wire[-2] == 0x27 and wire[-1] == 0x7E
    assert wire.startswith(SYNTH_PREFIX)
    data = 1 + 40 + 4  # flag + header + subrecord time
    assert wire[data + 72 : data + 86] == SYNTH_NIBP_GROUP
    assert wire[data + 118 : data + 132] == SYNTH_SPO2_GROUP

    proto = DatexProtocol(source="vec")
    readings = proto.feed(wire, NOW)
    assert proto.stats.frames_ok == 1 and proto.stats.frames_bad == 0
    assert proto.streaming
    got = {r.parameter: r for r in readings}
    assert {p: r.value for p, r in got.items()} == {
        "hr": 72.0,
        "nibp_sys": 120.0,
        "nibp_dia": 80.0,
        "nibp_mean": 93.0,
        "spo2": 98.0,
        "pr": 72.0,
    }
    when = datetime(2025, 6, 10, 14, 30, tzinfo=UTC)
    assert all(r.device_time == when for r in readings)
    assert all(r.host_time == NOW and r.source == "vec" for r in readings)
    assert all(r.quality is Quality.NONE for r in readings)
    assert got["nibp_sys"].unit == "mm[Hg]" and got["nibp_sys"].mdc == "MDC_PRESS_BLD_NONINV_SYS"
    assert got["spo2"].unit == "%" and got["hr"].unit == "/min"


def test_default_serial_and_registry() -> None:
    s = DatexProtocol.default_serial
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits, s.rtscts) == (
        19200,
        8,
        Parity.EVEN,
        1,
        True,
    )
    assert protocol_class("datex") is DatexProtocol
    assert DatexProtocol().on_connect(NOW) == DatexProtocol().request_bytes()


# ---- decoding rules ---------------------------------------------------------------------------
def record(
    *,
    ecg: tuple[int, ...] = (72, INV, INV, INV, 15),
    spo2: tuple[int, ...] = (9700, 71, 300, INV),
    nibp: tuple[int, ...] = (12000, 8000, 9300, 70),
    nibp_status: int = dx.ST_EXISTS | dx.ST_ACTIVE,
    nibp_time: int | None = None,
    co2: dx.Group | None = None,
    r_time: int = SYNTH_TIME,
    temp1: int | None = None,
) -> bytes:
    groups = {n: dx.absent_group(n) for n in ("p1", "p2", "p3", "p4", "t1", "t2", "t3", "t4")}
    groups["ecg"] = dx.Group(3, 0, ecg)
    groups["spo2"] = dx.Group(3, 0, spo2)
    groups["nibp"] = dx.Group(nibp_status, 0, nibp)
    if co2 is not None:
        groups["co2"] = co2
    if temp1 is not None:
        groups["t1"] = dx.Group(3, 0, (temp1,))
    rec = dx.DisplayedRecord(r_time=r_time, groups=groups, nibp_time=nibp_time)
    return dx.frame(rec.encode())


@pytest.mark.parametrize("special", [*sorted(dx.SPECIAL_NAMES), -32001, -32768])
def test_special_values_give_no_reading(special: int) -> None:
    proto = DatexProtocol()
    readings = proto.feed(
        record(ecg=(special, INV, INV, INV, special), spo2=(special, special, 0, INV)), NOW
    )
    assert {r.parameter for r in readings} == {"nibp_sys", "nibp_dia", "nibp_mean"}


def test_units_and_scaling() -> None:
    co2 = dx.Group(3, 1, (510, 20, 12, 7600))
    readings = by_param(
        DatexProtocol().feed(record(co2=co2, temp1=3710, spo2=(9650, 88, 0, INV)), NOW)
    )
    assert readings["spo2"][0].value == 96.5
    assert readings["pr"][0].value == 88.0
    assert readings["rr"][0].value == 12.0  # the CO2 group's RR wins over ECG impedance (15)
    assert readings["etco2_pct"][0].value == 5.1 and readings["etco2_pct"][0].unit == "%"
    assert readings["temp"][0].value == 37.1 and readings["temp"][0].unit == "Cel"
    # Without a CO2 module the ECG impedance RR is used.
    readings = by_param(DatexProtocol().feed(record(), NOW))
    assert readings["rr"][0].value == 15.0
    assert "etco2_pct" not in readings and "temp" not in readings


def test_group_that_does_not_exist_is_ignored() -> None:
    groups = synthetic_groups()
    groups["spo2"] = dx.Group(0, 0, (9800, 72, 350, INV))  # module absent, numbers left over
    wire = dx.frame(dx.DisplayedRecord(r_time=SYNTH_TIME, groups=groups).encode())
    assert "spo2" not in {r.parameter for r in DatexProtocol().feed(wire, NOW)}


def nibp_of(readings: list[Reading]) -> list[tuple[str, float]]:
    return [(r.parameter, r.value) for r in readings if r.parameter.startswith("nibp")]


def test_nibp_from_status_bits_once_per_cycle() -> None:
    base = dx.ST_EXISTS | dx.ST_ACTIVE | dx.NIBP_AUTO
    proto = DatexProtocol()
    # Connect while the cuff inflates: old values on display, measuring bit set.
    assert nibp_of(proto.feed(record(nibp_status=base | dx.NIBP_MEASURING), NOW)) == []
    out = proto.feed(record(nibp=(13000, 8500, 10000, 70), nibp_status=base), NOW)
    assert nibp_of(out) == [("nibp_sys", 130.0), ("nibp_dia", 85.0), ("nibp_mean", 100.0)]
    assert out[-1].device_time == datetime(2025, 6, 10, 14, 30, tzinfo=UTC)  # record time
    # The same result on the next records: not new.
    for _ in range(3):
        assert (
            nibp_of(proto.feed(record(nibp=(13000, 8500, 10000, 70), nibp_status=base), NOW)) == []
        )
    # Aged past 60 s: still not new.
    aged = base | dx.NIBP_OLDER_60S
    assert nibp_of(proto.feed(record(nibp=(13000, 8500, 10000, 70), nibp_status=aged), NOW)) == []
    # Another cycle that happens to give the same numbers is a new measurement.
    assert nibp_of(proto.feed(record(nibp_status=base | dx.NIBP_MEASURING), NOW)) == []
    out = proto.feed(record(nibp=(13000, 8500, 10000, 70), nibp_status=base), NOW)
    assert len(nibp_of(out)) == 3


def test_nibp_older_than_60s_at_connect_is_skipped_without_nibp_time() -> None:
    status = dx.ST_EXISTS | dx.ST_ACTIVE | dx.NIBP_OLDER_60S
    assert nibp_of(DatexProtocol().feed(record(nibp_status=status), NOW)) == []


def test_nibp_calibrating_gives_nothing() -> None:
    status = dx.ST_EXISTS | dx.ST_ACTIVE | dx.NIBP_CALIBRATING
    assert nibp_of(DatexProtocol().feed(record(nibp_status=status), NOW)) == []


def test_nibp_time_marks_new_measurements() -> None:
    base = dx.ST_EXISTS | dx.ST_ACTIVE | dx.NIBP_AUTO
    t1 = SYNTH_TIME - 200
    proto = DatexProtocol()
    # An old result is still emitted once at connect: nibp_time says exactly when it was taken.
    out = proto.feed(record(nibp_status=base | dx.NIBP_OLDER_60S, nibp_time=t1), NOW)
    assert len(nibp_of(out)) == 3
    assert {r.device_time for r in out if r.parameter.startswith("nibp")} == {
        datetime.fromtimestamp(t1, UTC)
    }
    assert {r.device_time for r in out if r.parameter == "hr"} == {
        datetime.fromtimestamp(SYNTH_TIME, UTC)
    }
    assert nibp_of(proto.feed(record(nibp_status=base, nibp_time=t1), NOW)) == []
    # Measuring: no, even though nibp_time is (still) the old one.
    assert (
        nibp_of(proto.feed(record(nibp_status=base | dx.NIBP_MEASURING, nibp_time=t1), NOW)) == []
    )
    # Identical numbers from a new cuff cycle are a new measurement.
    out = proto.feed(record(nibp_status=base, nibp_time=t1 + 300), NOW)
    assert len(nibp_of(out)) == 3
    # A reconnect (reset) does not replay the last measurement.
    proto.reset()
    assert nibp_of(proto.feed(record(nibp_status=base, nibp_time=t1 + 300), NOW)) == []
    # nibp_time 0 = unknown: fall back on the status bits (same values -> not new).
    assert nibp_of(proto.feed(record(nibp_status=base, nibp_time=0), NOW)) == []


def test_nibp_partially_invalid() -> None:
    out = DatexProtocol().feed(record(nibp=(12000, INV, 9300, INV)), NOW)
    assert nibp_of(out) == [("nibp_sys", 120.0), ("nibp_mean", 93.0)]


def test_framing_errors_are_counted_not_raised() -> None:
    good = record()
    proto = DatexProtocol()
    cases = [
        b"\x7e\x01\x02\x03\x7e",  # too short
        b"\x7e" + bytes(60) + b"\x7e",  # r_len 0 != 59, checksum 0 ok
        good[:-2] + b"\x7d\x7e",  # escape byte right before the flag
        good[:10] + b"\x7d\x11" + good[12:],  # undefined escape
        good[:-2] + bytes([good[-2] ^ 1]) + b"\x7e",  # checksum
    ]
    for c in cases:
        assert proto.feed(c, NOW) == []
    assert proto.stats.frames_bad == len(cases)
    assert proto.stats.frames_ok == 0
    assert not proto.streaming
    assert len(proto.feed(good, NOW)) > 0


def test_noise_before_first_flag_and_overlong_frames() -> None:
    proto = DatexProtocol()
    assert proto.feed(b"junk junk" + record(), NOW)
    assert proto.stats.frames_bad == 1 and "noise" in proto.stats.last_error
    proto.feed(b"\x7e" + b"\x01" * (dx.MAX_WIRE_LEN + 10), NOW)
    assert proto.stats.frames_bad == 1  # not closed yet
    assert proto._deframer.pending == 0  # but nothing is buffered past the limit
    assert proto.feed(record(), NOW)
    assert proto.stats.frames_bad == 2 and "longer" in proto.stats.errors[1]


def test_other_main_types_are_ignored() -> None:
    hdr = dx.encode_header(data_len=4, maintype=dx.MT_WAVE, subrecords=[(0, 1)])
    proto = DatexProtocol()
    assert proto.feed(dx.frame(hdr + b"\x01\x02\x03\x04"), NOW) == []
    assert proto.stats.frames_ok == 1 and proto.stats.frames_bad == 0
    assert not proto.streaming


def test_subrecord_out_of_bounds_is_a_bad_frame() -> None:
    hdr = dx.encode_header(data_len=10, maintype=dx.MT_PHDB, subrecords=[(0, 1), (50, 4)])
    proto = DatexProtocol()
    assert proto.feed(dx.frame(hdr + bytes(10)), NOW) == []
    assert proto.stats.frames_bad == 1
    hdr = dx.encode_header(data_len=10, maintype=dx.MT_PHDB, subrecords=[(0, 1)])
    assert proto.feed(dx.frame(hdr + bytes(10)), NOW) == []
    assert proto.stats.frames_bad == 2 and "too short" in proto.stats.last_error


def test_request_repeated_only_after_two_intervals_without_data() -> None:
    proto = DatexProtocol()
    proto.on_connect(NOW)
    assert proto.outgoing(NOW + timedelta(seconds=10)) == b""
    assert proto.outgoing(NOW + timedelta(seconds=11)) == proto.request_bytes()
    proto.feed(record(), NOW)
    assert proto.outgoing(NOW + timedelta(seconds=60)) == b""
    assert proto.stop_bytes() == dx.frame(dx.encode_phdb_request(dx.PhdbRequest(1, 0)))


# ---- fuzzing ----------------------------------------------------------------------------------
def stream_of_records(n: int = 4) -> bytes:
    emu = DatexEmulator(get_scenario("stable"), device_epoch=NOW)
    emu.on_host_bytes(DatexProtocol().request_bytes(), 25.0)
    out = b""
    t = 25.0
    while out.count(b"\x7e") < 2 * n:
        out += emu.tick(t)
        t += 0.5
    return out


STREAM = stream_of_records()
STREAM_READINGS = [key(r) for r in DatexProtocol(source="s").feed(STREAM, NOW)]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    proto = DatexProtocol()
    proto.feed(data, NOW)
    proto.feed(data[::-1] + b"\x7e", NOW)
    assert proto.stats.bytes_in == 2 * len(data) + 1


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_one_flipped_byte_kills_only_that_frame(data: st.DataObject) -> None:
    frame_bytes = record(nibp_time=SYNTH_TIME - 10)
    pos = data.draw(st.integers(0, len(frame_bytes) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(frame_bytes)
    damaged[pos] ^= flip
    trailer = record(ecg=(61, INV, INV, INV, 9), spo2=(9100, 62, 0, INV), nibp=(INV,) * 4)
    proto = DatexProtocol(source="f")
    readings = proto.feed(bytes(damaged) + trailer, NOW)
    expected = [key(r) for r in DatexProtocol(source="f").feed(trailer, NOW)]
    assert [key(r) for r in readings] == expected
    assert proto.stats.frames_bad >= 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_fuzz_any_split_gives_the_same_readings(cuts: list[int]) -> None:
    proto = DatexProtocol(source="s")
    got: list[Reading] = []
    prev = 0
    for c in [*sorted(cuts), len(STREAM)]:
        got.extend(proto.feed(STREAM[prev:c], NOW))
        prev = c
    assert [key(r) for r in got] == STREAM_READINGS


def test_split_at_every_byte_boundary() -> None:
    assert len(STREAM_READINGS) >= 4 * 4
    for i in range(len(STREAM) + 1):
        proto = DatexProtocol(source="s")
        got = proto.feed(STREAM[:i], NOW) + proto.feed(STREAM[i:], NOW)
        assert [key(r) for r in got] == STREAM_READINGS, i


def test_byte_by_byte() -> None:
    proto = DatexProtocol(source="s")
    got: list[Reading] = []
    for b in STREAM:
        got.extend(proto.feed(bytes((b,)), NOW))
    assert [key(r) for r in got] == STREAM_READINGS


# ---- emulator ---------------------------------------------------------------------------------
def test_emulator_waits_for_request_then_pushes_at_interval() -> None:
    emu = DatexEmulator(get_scenario("stable"), device_epoch=NOW)
    assert all(emu.tick(t / 10) == b"" for t in range(100))  # silent without a request
    assert emu.on_host_bytes(PHDB_REQUEST_10S, 10.0) == b""
    sent = [t / 10 for t in range(100, 400) if emu.tick(t / 10)]
    assert sent == [10.0, 20.0, 30.0]
    # Stop request: silence again.
    emu.on_host_bytes(DatexProtocol().stop_bytes(), 40.0)
    assert all(emu.tick(t / 10) == b"" for t in range(400, 600))
    # Single shot: exactly one record.
    emu.on_host_bytes(DatexProtocol().request_bytes(dx.TX_SINGLE_SHOT), 60.0)
    assert [t / 10 for t in range(600, 800) if emu.tick(t / 10)] == [60.0]
    # Trend requests and intervals below 5 s do not start anything.
    emu.on_host_bytes(dx.frame(dx.encode_phdb_request(dx.PhdbRequest(2, 60))), 80.0)
    emu.on_host_bytes(dx.frame(dx.encode_phdb_request(dx.PhdbRequest(1, 3))), 80.0)
    assert all(emu.tick(t / 10) == b"" for t in range(800, 900))
    # A new connection forgets the request.
    emu.on_host_bytes(PHDB_REQUEST_10S, 90.0)
    emu.reset()
    assert all(emu.tick(t / 10) == b"" for t in range(900, 1000))


def test_emulator_nibp_status_bits_and_time() -> None:
    sc = get_scenario("stable")
    emu = DatexEmulator(sc, device_epoch=NOW)

    def nibp_at(t: float) -> tuple[dx.Group, int | None]:
        (res,) = dx.Deframer().feed(dx.frame(emu.displayed_record(t)))
        assert res.record is not None
        header, _ = dx.parse_header(res.record)
        assert header is not None
        spans, _ = dx.subrecord_spans(header, len(res.record) - 40)
        data = res.record[40:]
        basic = dx.parse_phdb_subrecord(1, data[spans[0][1] : spans[0][2]])
        aux = dx.parse_phdb_subrecord(4, data[spans[1][1] : spans[1][2]])
        assert basic is not None and aux is not None and aux.phdb_class == dx.CLASS_AUX
        return dx.decode_basic_class(basic.data)["nibp"], dx.aux_nibp_time(aux.data)

    g, nt = nibp_at(5.0)  # before the first cuff cycle
    assert g.values[:3] == (INV, INV, INV) and nt == 0
    g, _ = nibp_at(sc.first_nibp_s - 10)
    assert g.status & dx.NIBP_MEASURING
    g, nt = nibp_at(sc.first_nibp_s + 5)
    c0 = sc.cuff(0)
    assert g.values[:3] == (c0.sys * 100, c0.dia * 100, c0.mean * 100)
    assert not g.status & (dx.NIBP_MEASURING | dx.NIBP_OLDER_60S)
    assert g.status & dx.NIBP_AUTO
    assert nt == int((NOW + timedelta(seconds=c0.t_s)).timestamp())
    g, _ = nibp_at(sc.first_nibp_s + 120)
    assert g.status & dx.NIBP_OLDER_60S


# ---- loopback ---------------------------------------------------------------------------------
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def check_loopback(name: str, seconds: float = 700.0) -> tuple[dict[str, list[Reading]], int]:
    sc = get_scenario(name)
    res = run_loopback("datex", sc, seconds, epoch=EPOCH)
    readings = by_param(res.readings)
    for p in ("hr", "spo2", "pr", "rr"):
        assert readings[p], p
        for r in readings[p]:
            assert r.device_time is not None
            v = sc.vitals((r.device_time - EPOCH).total_seconds())
            assert r.value == getattr(v, p), (p, r)
    cycles = sc.cuff_index_at(seconds - 0.05) + 1
    assert cycles == 3
    for p, attr in (("nibp_sys", "sys"), ("nibp_dia", "dia"), ("nibp_mean", "mean")):
        assert [r.value for r in readings[p]] == [getattr(sc.cuff(i), attr) for i in range(cycles)]
        assert [r.device_time for r in readings[p]] == [
            EPOCH + timedelta(seconds=sc.cuff(i).t_s) for i in range(cycles)
        ]
    # The host sent exactly one request and the monitor kept pushing.
    assert res.host_to_device == PHDB_REQUEST_10S[:42] + h("05 00 00 00 00 00 00 00 36 7E")
    proto = DatexProtocol()
    proto.feed(res.device_to_host, EPOCH)
    return readings, proto.stats.frames_bad


def test_loopback_stable() -> None:
    readings, bad = check_loopback("stable")
    assert bad == 0
    assert len(readings["hr"]) == 140  # one record every 5 s


def test_loopback_artifact() -> None:
    readings, bad = check_loopback("artifact")
    assert bad >= 2 * 19  # each garbage burst: noise and a record with a wrong checksum
    assert len(readings["hr"]) == 140  # every genuine record still decoded
    assert len(readings["spo2"]) < 140  # sensor-off records carry -32767


# ---- end to end on a pty ----------------------------------------------------------------------
def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.pty
@pytest.mark.slow
def test_end_to_end_on_a_pty(tmp_path: Path) -> None:
    emu = DatexEmulator(get_scenario("stable"))
    link = tmp_path / "monitor"
    server = PtyServer(emu, speed=10.0, link=link).start()  # a record every 0.5 s of wall time

    class QuickWatchdog(DatexProtocol):
        quiet_time_s = 1.5  # a record every 0.5 s of wall time at speed 10

    proto = QuickWatchdog(source="e2e")
    lock = threading.Lock()
    events: list[StatusEvent] = []
    readings: list[Reading] = []

    def on_readings(batch: list[Reading]) -> None:
        with lock:
            readings.extend(batch)

    def on_status(ev: StatusEvent) -> None:
        with lock:
            events.append(ev)

    sup = Supervisor(
        SerialTransport(str(link), DatexProtocol.default_serial),
        proto,
        on_readings=on_readings,
        on_status=on_status,
        backoff_s=(0.1, 0.5),
    )
    thread = threading.Thread(target=sup.run, name="datex-e2e", daemon=True)
    thread.start()

    def n_readings() -> int:
        with lock:
            return len(readings)

    def states() -> list[LinkState]:
        with lock:
            return [e.state for e in events]

    def streaming_after(i: int) -> bool:
        with lock:
            return any(e.state is LinkState.STREAMING for e in events[i:])

    try:
        wait_for(lambda: LinkState.STREAMING in states() and n_readings() > 0, 5, "streaming")
        s = states()
        first = s.index(LinkState.CONNECTING)
        assert s[first : first + 3] == [
            LinkState.CONNECTING,
            LinkState.NEGOTIATING,
            LinkState.STREAMING,
        ]
        with lock:
            assert {r.parameter for r in readings} >= {"hr", "spo2", "pr", "rr"}

        # Pull the cable for about a second.
        mark = len(states())
        server.force_link(Link.PULLED)

        def link_lost() -> bool:
            with lock:
                return any(
                    e.state is LinkState.CONNECTING and "link lost" in e.reason
                    for e in events[mark:]
                )

        wait_for(link_lost, 3, "link lost")
        time.sleep(max(0.0, 1.0 - 0.1))
        server.force_link(None)
        mark = len(states())
        before = n_readings()
        wait_for(lambda: streaming_after(mark) and n_readings() > before, 5, "recovery")

        # Silence: the watchdog drops to NEGOTIATING with a "no data" reason.
        mark = len(states())
        server.force_link(Link.SILENT)

        def no_data() -> bool:
            with lock:
                return any(
                    e.state is LinkState.NEGOTIATING and "no data" in e.reason
                    for e in events[mark:]
                )

        wait_for(no_data, 4, "no-data watchdog")
        server.force_link(None)
        mark = len(states())
        before = n_readings()
        wait_for(lambda: streaming_after(mark) and n_readings() > before, 5, "recovery")
    finally:
        sup.stop()
        thread.join(5)
        server.stop()
    assert not thread.is_alive()
