"""Masimo Radical-7 / Rad-8 "ASCII 1": the sample lines of devices.md §2.3, line rules, fuzzing,
loopback against the emulator, and end to end on a pseudo-terminal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.emulators.masimo import MasimoEmulator, format_line
from devices.loopback import run_loopback
from devices.protocols import protocol_class
from devices.protocols.base import Parity
from devices.protocols.masimo import (
    EXC_SENSOR_OFF,
    VARIANTS,
    MasimoProtocol,
    describe_exceptions,
    exception_quality,
    parse_line,
)
from devices.readings import Quality, Reading
from devices.scenarios import Link, Vitals, get_scenario
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import SerialTransport

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

# devices.md §2.3, quoted from nmenon/masimo-datacapture
RADICAL7_LEGACY = (
    "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
    "DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000"
)
RADICAL7 = (
    "03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- "
    "SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000"
)
RAD8 = (
    "03/19/16 13:37:12 SN=0000093112 SPO2=---% BPM=---% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000001"
)
SAMPLES = (RADICAL7_LEGACY, RADICAL7, RAD8)


def key(r: Reading) -> tuple[object, ...]:
    return (r.parameter, r.value, r.unit, r.mdc, r.device_time, r.quality, r.source)


def utc_proto(source: str = "") -> MasimoProtocol:
    return MasimoProtocol(source, device_tz=UTC)


# ---- devices.md §2.3 vectors ------------------------------------------------------------------
def test_sample_radical7_legacy_all_missing() -> None:
    proto = utc_proto()
    assert proto.feed(RADICAL7_LEGACY.encode() + b"\r\n", NOW) == []
    assert proto.stats.frames_ok == 1 and proto.stats.frames_bad == 0
    assert proto.streaming  # a valid line, even with no reading in it
    assert proto.variant == "radical7_legacy"
    assert proto.serial_number == "0000070986"
    assert proto.exceptions == 0 and proto.alarm == 0
    parsed, _ = parse_line(RADICAL7_LEGACY, UTC)
    assert parsed is not None
    assert parsed.device_time == datetime(2007, 5, 15, 8, 12, 21, tzinfo=UTC)


def test_sample_radical7_new_firmware() -> None:
    proto = utc_proto("m")
    readings = proto.feed(RADICAL7.encode() + b"\r\n", NOW)
    assert {r.parameter: r.value for r in readings} == {"spo2": 98.0, "pr": 123.0, "pi": 0.55}
    units = {r.parameter: r.unit for r in readings}
    assert units == {"spo2": "%", "pr": "/min", "pi": "%"}
    when = datetime(2016, 3, 17, 19, 19, 36, tzinfo=UTC)
    for r in readings:
        assert r.device_time == when and r.host_time == NOW and r.source == "m"
        # EXC 0xC00 = low signal IQ (0x400, questionable) + SET mode (0x800, no flag)
        assert r.quality is Quality.QUESTIONABLE
    assert {r.parameter: r.mdc for r in readings}["spo2"] == "MDC_PULS_OXIM_SAT_O2"
    assert proto.variant == "radical7" and proto.serial_number is None
    assert proto.exceptions == 0xC00
    assert describe_exceptions(0xC00) == ["low signal IQ", "SET mode"]


def test_sample_rad8_no_sensor() -> None:
    proto = utc_proto()
    assert proto.feed(RAD8.encode() + b"\r\n", NOW) == []
    assert proto.stats.frames_ok == 1
    assert proto.variant == "rad8" and proto.serial_number == "0000093112"
    assert describe_exceptions(proto.exceptions) == ["no sensor"]


def test_emulator_formats_the_sample_lines_byte_identically() -> None:
    assert (
        format_line("radical7_legacy", datetime(2007, 5, 15, 8, 12, 21), None) == RADICAL7_LEGACY
    )
    assert (
        format_line(
            "radical7",
            datetime(2016, 3, 17, 19, 19, 36),
            Vitals(hr=0, spo2=98, rr=0, pr=123),
            pi=0.55,
            exceptions=0xC00,
            serial="----------",
        )
        == RADICAL7
    )
    assert (
        format_line(
            "rad8", datetime(2016, 3, 19, 13, 37, 12), None, exceptions=1, serial="0000093112"
        )
        == RAD8
    )


def test_default_serial_and_registry() -> None:
    s = MasimoProtocol.default_serial
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits, s.rtscts, s.xonxoff) == (
        9600,
        8,
        Parity.NONE,
        1,
        False,
        False,
    )
    assert protocol_class("masimo") is MasimoProtocol
    assert emulator_class("masimo") is MasimoEmulator
    proto = MasimoProtocol()
    assert proto.on_connect(NOW) == b"" and proto.outgoing(NOW) == b""  # listen only


# ---- line rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bits", "quality"),
    [
        (0x000, Quality.NONE),
        (0x001, Quality.INVALID),
        (0x002, Quality.INVALID),
        (0x004, Quality.QUESTIONABLE),
        (0x008, Quality.QUESTIONABLE),
        (0x010, Quality.QUESTIONABLE),
        (0x020, Quality.INVALID),
        (0x040, Quality.QUESTIONABLE),
        (0x080, Quality.INVALID),
        (0x400, Quality.QUESTIONABLE),
        (0x800, Quality.NONE),
        (0x024, Quality.INVALID | Quality.QUESTIONABLE),
    ],
)
def test_exception_bits_to_quality(bits: int, quality: Quality) -> None:
    assert exception_quality(bits) == quality
    line = format_line("radical7", datetime(2026, 1, 5, 9), Vitals(70, 97, 14, 71), pi=1.2)
    line = line.replace("EXC=0000000", f"EXC={bits:07X}")
    readings = utc_proto().feed(line.encode() + b"\r\n", NOW)
    assert len(readings) == 3 and all(r.quality == quality for r in readings)


def test_unknown_exception_bits_are_described() -> None:
    assert describe_exceptions(0x1000200) == ["unknown bits 0x1000200"]


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r", b"\r\r\n\n"])
def test_line_endings(ending: bytes) -> None:
    proto = utc_proto()
    assert len(proto.feed(RADICAL7.encode() + ending + RADICAL7.encode() + ending, NOW)) == 6
    assert proto.stats.frames_bad == 0


def test_partial_line_is_held_until_its_end() -> None:
    proto = utc_proto()
    data = RADICAL7.encode()
    assert proto.feed(data[:50], NOW) == []
    assert proto.feed(data[50:], NOW) == []
    assert not proto.streaming
    assert len(proto.feed(b"\r", NOW)) == 3
    assert proto.streaming
    assert proto.feed(b"\n", NOW) == []
    # reset() drops a partial line.
    proto.feed(data[:50], NOW)
    proto.reset()
    assert not proto.streaming
    assert proto.feed(data[50:] + b"\r\n", NOW) == []
    assert proto.stats.frames_bad == 1


def test_values_with_numbers_in_every_field() -> None:
    line = (
        "03/17/16 19:19:36 SN=0000012345 SPO2=097% BPM=064 PI=03.10 SPCO=02% SPMET=01.2% "
        "SPHB=13.4 SPOC=18 RESVD=--- DESAT=00 PIDELTA=+05 PVI=014 ALARM=000000 EXC=0000000 "
        "EXC1=00000000"
    )
    got = {r.parameter: (r.value, r.unit) for r in utc_proto().feed(line.encode() + b"\n", NOW)}
    assert got == {
        "spo2": (97.0, "%"),
        "pr": (64.0, "/min"),
        "pi": (3.1, "%"),
        "spco": (2.0, "%"),
        "spmet": (1.2, "%"),
        "sphb": (13.4, "g/dL"),
        "spoc": (18.0, "mL/dL"),
        "pvi": (14.0, "%"),
    }


def test_unknown_but_well_formed_layout_is_accepted() -> None:
    line = "01/05/26 09:00:00 SN=1234 SPO2=097% BPM=064 RRA=014 ALARM=00000 EXC=00000"
    readings = utc_proto().feed(line.encode() + b"\r\n", NOW)
    assert {r.parameter: r.value for r in readings} == {"spo2": 97.0, "pr": 64.0}


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello",
        "13/45/16 19:19:36 SPO2=098% BPM=123 EXC=000000",  # impossible date
        "03/17/16 25:19:36 SPO2=098% BPM=123 EXC=000000",  # impossible time
        "03-17-16 19:19:36 SPO2=098% BPM=123 EXC=000000",
        "03/17/16 19:19:36 BPM=123 EXC=000000",  # no SPO2
        "03/17/16 19:19:36 SPO2=098% BPM=123",  # no exception field: cut short?
        "03/17/16 19:19:36 SPO2=098% BPM=123 EXC=000000 SN=1",  # exception field not last
        "03/17/16 19:19:36 SPO2=098% SPO2=097% BPM=123 EXC=000000",  # duplicate
        "03/17/16 19:19:36 SPO2=09x% BPM=123 EXC=000000",  # bad number
        "03/17/16 19:19:36 SPO2=098% BPM=123 EXC=00G000",  # bad hex
        "03/17/16 19:19:36 SPO2=098% BPM=123 EXC=",
        "03/17/16 19:19:36 SPO2=098% BPM=123 garbage EXC=000000",
        "03/17/16 19:19:36 SPO2=098% BPM=1234 EXC=000000",
        "03/17/16 19:19:36 SPO2=098%\tBPM=123\x07 EXC=000000",  # control characters
        RADICAL7.rsplit(" ", 1)[0],  # new-firmware line without its EXC1: truncated
        RADICAL7_LEGACY.replace("EXC=000000", "EXC=00000"),  # wrong width for the model
    ],
)
def test_malformed_lines_are_counted(line: str) -> None:
    proto = utc_proto()
    assert proto.feed(line.encode() + b"\r\n", NOW) == []
    assert proto.stats.frames_bad == (1 if line.strip() else 0)
    assert not proto.streaming


def test_non_ascii_and_overlong_lines() -> None:
    proto = utc_proto()
    assert proto.feed(b"03/17/16 19:19:36 SPO2=098\xff% BPM=123 EXC=000000\r\n", NOW) == []
    assert "non-ASCII" in proto.stats.last_error
    assert proto.feed(b"x" * 5000, NOW) == []
    assert proto._buf == bytearray()  # nothing buffered past the limit
    assert proto.feed(b"\r\n" + RADICAL7.encode() + b"\r\n", NOW)
    assert proto.stats.frames_bad == 2 and "longer" in proto.stats.last_error


def valid_lines() -> list[str]:
    out = list(SAMPLES)
    for variant in VARIANTS:
        when = datetime(2026, 1, 5, 9, 30, 1)
        out.append(format_line(variant, when, Vitals(hr=80, spo2=95, rr=12, pr=81), pi=4.25))
    return out


@pytest.mark.parametrize("line", valid_lines())
def test_every_truncation_of_a_valid_line_is_rejected(line: str) -> None:
    assert parse_line(line, UTC)[0] is not None
    for cut in range(len(line)):
        proto = utc_proto()
        assert proto.feed(line[:cut].encode() + b"\r\n", NOW) == [], line[:cut]
        assert proto.stats.frames_ok == 0, line[:cut]


def test_device_clock_is_read_in_the_host_zone_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        winter = MasimoProtocol().feed(RADICAL7.encode() + b"\r\n", NOW)[0].device_time
        summer_line = RADICAL7.replace("03/17/16", "07/17/16")
        summer = MasimoProtocol().feed(summer_line.encode() + b"\r\n", NOW)[0].device_time
        emu = MasimoEmulator(get_scenario("stable"), device_epoch=NOW)
        line = emu.line_bytes(0.0).decode()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert winter == datetime(2016, 3, 17, 18, 19, 36, tzinfo=UTC)  # CET = UTC+1
    assert summer == datetime(2016, 7, 17, 17, 19, 36, tzinfo=UTC)  # CEST = UTC+2
    assert line.startswith("01/05/26 10:00:00 ")  # the emulator's clock in the same zone


# ---- fuzzing ----------------------------------------------------------------------------------
def emulator_stream(variant: str = "radical7", seconds: int = 6) -> bytes:
    emu = MasimoEmulator(get_scenario("stable"), device_epoch=NOW, variant=variant, device_tz=UTC)
    return b"".join(emu.tick(t / 4) for t in range(4 * seconds))


STREAM = emulator_stream()
STREAM_READINGS = [key(r) for r in utc_proto("s").feed(STREAM, NOW)]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1500))
def test_fuzz_random_bytes_never_raise_nor_read(data: bytes) -> None:
    proto = utc_proto()
    assert proto.feed(data, NOW) == []
    assert proto.feed(b"\r\n", NOW) == []
    assert proto.stats.bytes_in == len(data) + 2


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789/:= -+.%ABCEIMOPSX\r\n", max_size=400))
def test_fuzz_plausible_text_never_raises(text: str) -> None:
    proto = utc_proto()
    proto.feed(text.encode(), NOW)
    proto.feed(b"\n", NOW)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(valid_lines()))
def test_fuzz_garbage_line_then_valid_line(junk: bytes, line: str) -> None:
    proto = utc_proto("g")
    readings = proto.feed(junk + b"\r\n" + line.encode() + b"\r\n", NOW)
    expected = [key(r) for r in utc_proto("g").feed(line.encode() + b"\r\n", NOW)]
    assert [key(r) for r in readings] == expected


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_line_cut_anywhere_yields_nothing(data: st.DataObject) -> None:
    line = data.draw(st.sampled_from(valid_lines()))
    cut = data.draw(st.integers(0, len(line) - 1))
    tail = data.draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    proto = utc_proto()
    assert proto.feed(line[:cut].encode() + tail, NOW) == []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_fuzz_any_split_gives_the_same_readings(cuts: list[int]) -> None:
    proto = utc_proto("s")
    got: list[Reading] = []
    prev = 0
    for c in [*sorted(cuts), len(STREAM)]:
        got.extend(proto.feed(STREAM[prev:c], NOW))
        prev = c
    assert [key(r) for r in got] == STREAM_READINGS


def test_split_at_every_byte_boundary() -> None:
    assert len(STREAM_READINGS) == 3 * 6
    for i in range(len(STREAM) + 1):
        proto = utc_proto("s")
        got = proto.feed(STREAM[:i], NOW) + proto.feed(STREAM[i:], NOW)
        assert [key(r) for r in got] == STREAM_READINGS, i


# ---- emulator ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_emulator_variants_one_line_per_second(variant: str) -> None:
    sc = get_scenario("stable")
    emu = MasimoEmulator(sc, device_epoch=NOW, variant=variant, device_tz=UTC)
    assert emu.on_host_bytes(b"anything", 0.0) == b""
    out = [(t / 20, emu.tick(t / 20)) for t in range(20 * 5)]
    sent = [t for t, b in out if b]
    assert sent == [0.0, 1.0, 2.0, 3.0, 4.0]
    proto = utc_proto()
    readings = proto.feed(b"".join(b for _, b in out), NOW)
    assert proto.variant == variant and proto.stats.frames_bad == 0
    spo2 = [r for r in readings if r.parameter == "spo2"]
    assert [r.value for r in spo2] == [sc.vitals(t).spo2 for t in range(5)]
    assert [r.device_time for r in spo2] == [NOW + timedelta(seconds=t) for t in range(5)]
    expected = {"spo2", "pr"} | ({"pi"} if variant != "rad8" else set())
    assert {r.parameter for r in readings} == expected


def test_emulator_default_variant_and_bad_variant() -> None:
    assert MasimoEmulator(get_scenario("stable")).variant == "radical7"
    with pytest.raises(ValueError, match="unknown Masimo variant"):
        MasimoEmulator(get_scenario("stable"), variant="rad97")


def test_emulator_artifact_burst() -> None:
    emu = MasimoEmulator(get_scenario("artifact"), device_epoch=NOW, device_tz=UTC)
    burst = emu.line_bytes(7.0)
    proto = utc_proto()
    assert proto.feed(burst, NOW) == []  # noise, a cut line, a sensor-off line
    assert proto.stats.frames_bad >= 2
    assert proto.exceptions == EXC_SENSOR_OFF
    assert emu.line_bytes(7.0).count(b"\r\n") == 1  # once per garbage window


# ---- loopback ---------------------------------------------------------------------------------
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def check_loopback(name: str) -> tuple[dict[str, list[Reading]], int]:
    sc = get_scenario(name)
    res = run_loopback("masimo", sc, 700.0, epoch=EPOCH)
    assert res.host_to_device == b""  # the host never talks to the oximeter
    readings: dict[str, list[Reading]] = {}
    for r in res.readings:
        readings.setdefault(r.parameter, []).append(r)
    assert set(readings) == {"spo2", "pr", "pi"}  # no NIBP, no HR/RR from a pulse oximeter
    for p in ("spo2", "pr"):
        for r in readings[p]:
            assert r.device_time is not None and r.quality is Quality.NONE
            assert r.value == getattr(sc.vitals((r.device_time - EPOCH).total_seconds()), p)
    proto = MasimoProtocol()
    proto.feed(res.device_to_host, EPOCH)
    return readings, proto.stats.frames_bad


def test_loopback_stable() -> None:
    readings, bad = check_loopback("stable")
    assert bad == 0
    assert len(readings["spo2"]) == 700


def test_loopback_artifact() -> None:
    readings, bad = check_loopback("artifact")
    windows = 99  # garbage due once every 7 s from t=7 to t=693
    assert bad >= 2 * windows
    assert len(readings["spo2"]) == 700 - windows


# ---- end to end on a pty ----------------------------------------------------------------------
def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def masimo_server(tmp_path: Path) -> Iterator[tuple[PtyServer, Path]]:
    emu = MasimoEmulator(get_scenario("stable"), variant="radical7")
    link = tmp_path / "oximeter"
    server = PtyServer(emu, speed=4.0, link=link).start()  # four lines per second of wall time
    try:
        yield server, link
    finally:
        server.stop()


@pytest.mark.pty
@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_end_to_end_on_a_pty(masimo_server: tuple[PtyServer, Path]) -> None:
    server, link = masimo_server

    class QuickWatchdog(MasimoProtocol):
        quiet_time_s = 1.0  # four lines per second of wall time at speed 4

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
        SerialTransport(str(link), MasimoProtocol.default_serial),
        proto,
        on_readings=on_readings,
        on_status=on_status,
        backoff_s=(0.1, 0.5),
    )
    thread = threading.Thread(target=sup.run, name="masimo-e2e", daemon=True)
    thread.start()

    def n_readings() -> int:
        with lock:
            return len(readings)

    def states() -> list[LinkState]:
        with lock:
            return [e.state for e in events]

    def seen_after(mark: int, state: LinkState, text: str = "") -> bool:
        with lock:
            return any(e.state is state and text in e.reason for e in events[mark:])

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
            assert {r.parameter for r in readings} >= {"spo2", "pr"}
            assert all(r.source == "e2e" and r.device_time is not None for r in readings)

        mark = len(states())
        server.force_link(Link.PULLED)
        wait_for(lambda: seen_after(mark, LinkState.CONNECTING, "link lost"), 3, "link lost")
        time.sleep(0.9)
        server.force_link(None)
        mark, before = len(states()), n_readings()
        wait_for(
            lambda: seen_after(mark, LinkState.STREAMING) and n_readings() > before, 5, "recovery"
        )

        mark = len(states())
        server.force_link(Link.SILENT)
        wait_for(lambda: seen_after(mark, LinkState.NEGOTIATING, "no data"), 3, "watchdog")
        server.force_link(None)
        mark, before = len(states()), n_readings()
        wait_for(
            lambda: seen_after(mark, LinkState.STREAMING) and n_readings() > before, 5, "recovery"
        )
    finally:
        sup.stop()
        thread.join(5)
    assert not thread.is_alive()
