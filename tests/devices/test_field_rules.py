"""Field-level validation of the formats without a checksum (issue 11 §3, issue 16): HL7 OBX
structure, codes and units; Masimo's fixed line layout. A flipped bit is rejected wherever the
format makes that possible; what remains is a digit turned into another digit (or one valid status
letter into another), which no receiver of these formats can tell from a real value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devices.protocols.hl7 import HL7Protocol, mllp_wrap
from devices.protocols.masimo import MasimoProtocol, parse_line
from devices.readings import Quality, Reading
from tests.devices.corpus.build_corpus import hl7_files, masimo_files

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MSH = (
    "MSH|^~\\&|MON^0012345678ABCDEF^EUI-64|CLINIC|||20260301120000+0000||ORU^R01^ORU_R01|{cid}"
    "|P|2.6"
)
OBR = "OBR|1||||||20260301120000+0000"


def hl7_one(obx: str, msh: str = MSH) -> tuple[list[Reading], HL7Protocol]:
    p = HL7Protocol(source="t")
    msg = "\r".join([msh.format(cid="C1"), OBR, obx]) + "\r"
    return p.feed(mllp_wrap(msg), NOW), p


GOOD_HR = "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|60|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"


def test_the_good_obx_decodes() -> None:
    rs, p = hl7_one(GOOD_HR)
    assert [(r.parameter, r.value, r.origin, r.channel) for r in rs] == [
        ("hr", 60.0, "ecg", "1.7.1.1")
    ]
    assert p.stats.frames_bad == 0


@pytest.mark.parametrize(
    ("obx", "why"),
    [
        # OBX-3: a ref id of another code (151578 -> 151570 by one flipped bit)
        (
            "OBX|1|NM|151570^MDC_TTHOR_RESP_RATE^MDC|1.1.1.1|15|/min^/min^UCUM|||||R",
            "does not match its ref id",
        ),
        # OBX-3: the ref id one character off
        (GOOD_HR.replace("HEART_RATE", "HEART_RATF"), "is damaged"),
        # an unknown code beside a ref id one character off a known one
        (GOOD_HR.replace("147842^MDC_ECG_HEART_RATE", "147843^MDC_ECG_HEART_RATF"), "damaged"),
        # OBX-4: level 0 is a channel row, never a metric; a flipped '.'
        (GOOD_HR.replace("|1.7.1.1|", "|1.7.1.0|"), "not a metric's containment id"),
        (GOOD_HR.replace("|1.7.1.1|", "|1/7.1.1|"), "OBX-4 sub-id"),
        # OBX-5: a blank where a '0' was ("60" -> "6 "), a separator in the number
        (GOOD_HR.replace("|60|", "|6 |"), "blanks around the number"),
        (GOOD_HR.replace("|60|", "|6&|"), "subcomponents"),
        # OBX-5: a rate is never negative; a digit off a sentinel is a damaged sentinel
        (GOOD_HR.replace("|60|", "|-60|"), "cannot be negative"),
        (GOOD_HR.replace("|60|", "|-998|"), "one digit off a 'no value' sentinel"),
        # OBX-6: unit code and ref id disagree; a coding system with a letter added
        (GOOD_HR.replace("264864^MDC_DIM_BEAT_PER_MIN", "262688^MDC_DIM_BEAT_PER_MIN"), "unit"),
        (GOOD_HR.replace("MDC_DIM_BEAT_PER_MIN^MDC|", "MDC_DIM_BEAT_PER_MIN^MDCx|"), "coding"),
        # OBX-1 must be a number
        (GOOD_HR.replace("OBX|1|", "OBX|q|"), "OBX-1"),
    ],
)
def test_damaged_obx_fields_are_rejected_and_named(obx: str, why: str) -> None:
    rs, p = hl7_one(obx)
    assert rs == []
    assert p.stats.frames_bad == 1 and why in p.stats.last_error, p.stats.last_error


def test_damaged_separators_reject_the_whole_message_with_an_error_ack() -> None:
    rs, p = hl7_one(GOOD_HR, msh=MSH.replace("^~\\&", "^~\\."))
    assert rs == [] and "separators" in p.stats.last_error
    assert b"MSA|AE|C1" in p.outgoing(NOW)


def test_sentinels_give_no_reading_and_are_counted() -> None:
    rs, p = hl7_one(GOOD_HR.replace("|60|", "|-999|"))
    assert rs == [] and p.sentinels == 1 and p.stats.frames_bad == 0
    temp = "OBX|1|NM|150344^MDC_TEMP^MDC|1.4.1.1|-99.9|268192^MDC_DIM_DEGC^MDC|||||R"
    rs, p = hl7_one(temp)
    assert rs == [] and p.sentinels == 1
    # a temperature may be negative in general (plausibility is checked after the decoder)
    rs, _ = hl7_one(temp.replace("-99.9", "-5"))
    assert [r.value for r in rs] == [-5.0]


def test_obx11_x_withholds_the_value_and_obx8_demo_flags_it() -> None:
    rs, p = hl7_one(GOOD_HR.replace("|||||R", "|||||X"))
    assert rs == [] and p.withheld == 1 and p.stats.frames_bad == 0
    rs, _ = hl7_one(GOOD_HR.replace("|||||R", "||DEMO|||R"))
    assert [r.quality for r in rs] == [Quality.DEMO]


def test_cuff_codes_and_dimensionless_pi() -> None:
    cuff = "OBX|1|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.3.1.1|147|266016^MDC_DIM_MMHG^MDC|||||R"
    rs, _ = hl7_one(cuff)
    assert [(r.parameter, r.value, r.mdc, r.origin) for r in rs] == [
        ("nibp_sys", 147.0, "MDC_PRESS_CUFF_SYS", "cuff")
    ]
    pi = "OBX|1|NM|150448^MDC_PULS_OXIM_PERF_REL^MDC|1.2.1.3|2.3|262656^MDC_DIM_DIMLESS^MDC|||||R"
    rs, _ = hl7_one(pi)
    assert [(r.parameter, r.value, r.unit) for r in rs] == [("pi", 2.3, "%")]
    # dimensionless is accepted for PI only, not for a saturation
    rs, p = hl7_one(pi.replace("150448^MDC_PULS_OXIM_PERF_REL", "150456^MDC_PULS_OXIM_SAT_O2"))
    assert rs == [] and "does not fit spo2" in p.stats.last_error


def _digit_or_status(a: int, b: int) -> bool:
    """A change no field rule can see: a digit into a digit, a hex digit into a hex digit, or a
    valid status letter into another valid one (OBX-11 R/P/F/W…, MSH-11 P/T/D)."""
    digits = b"0123456789"
    letters = b"FRCUPWDTXINOS"
    return (a in digits and b in digits) or (a in letters and b in letters)


def _flip_survivors(protocol: str, data: bytes) -> list[tuple[int, int, int]]:
    """(offset, old byte, new byte) of every single-bit flip that was not rejected and gave a
    reading the original does not have."""
    proto_cls = HL7Protocol if protocol == "hl7" else MasimoProtocol
    p0 = proto_cls(source="t")
    base = {repr(_k(r)) for r in p0.feed(data, NOW)}
    out = []
    for bit in range(len(data) * 8):
        buf = bytearray(data)
        buf[bit // 8] ^= 1 << (bit % 8)
        p = proto_cls(source="t")
        got = p.feed(bytes(buf), NOW)
        if p.stats.frames_bad or p.stats.frames_ok < p0.stats.frames_ok:
            continue
        if {repr(_k(r)) for r in got} - base:
            out.append((bit // 8, data[bit // 8], buf[bit // 8]))
    return out


def _k(r: Reading) -> tuple[object, ...]:
    return (r.parameter, r.value, r.mdc, r.origin, r.channel, r.quality, r.device_time)


@pytest.mark.parametrize("name", ["hl7/mindray_cuff_nibp.hl7", "hl7/nist_pcd01_nibp.hl7"])
def test_every_undetected_single_bit_flip_of_an_hl7_capture_is_digit_to_digit(name: str) -> None:
    survivors = _flip_survivors("hl7", hl7_files()[name])
    assert survivors  # values and times: some changes are undetectable by nature
    assert all(_digit_or_status(a, b) for _, a, b in survivors), [
        (o, chr(a), chr(b)) for o, a, b in survivors if not _digit_or_status(a, b)
    ]


@pytest.mark.parametrize("name", ["masimo/radical5_mdpnp.txt", "masimo/radical7_mdpnp.txt"])
def test_every_undetected_single_bit_flip_of_a_masimo_line_is_a_digit(name: str) -> None:
    survivors = _flip_survivors("masimo", masimo_files()[name])
    hexdigits = b"0123456789ABCDEFabcdef"
    assert all(a in hexdigits and b in hexdigits for _, a, b in survivors), [
        (o, chr(a), chr(b)) for o, a, b in survivors if not (a in hexdigits and b in hexdigits)
    ]


# ---- Masimo ----------------------------------------------------------------------------------
R5 = "09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800"


def test_radical5_line_is_its_own_variant() -> None:
    parsed, why = parse_line(R5, UTC)
    assert parsed is not None, why
    assert parsed.variant == "radical5" and parsed.alarm == 0x20 and parsed.exceptions == 0x800
    assert parsed.values == {"spo2": 97.0, "pr": 64.0, "pi": 11.82}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (R5.replace("ALARM=20", "ALARM=0020"), "ALARM has 4 digits where this model sends 2"),
        (R5.replace("SPO2=097%", "SPO2=97%"), "fixed layout"),
        (R5.replace("PI=11.82%", "PI=11.8%"), "fixed layout"),
        (R5.replace("SPO2=", "SPO3="), "one character off a known one"),
        (R5.replace("BPM=064", "BPM=264"), "outside what the oximeter displays"),
        (R5.replace("SPO2=097%", "SPO2=197%"), "outside what the oximeter displays"),
        (R5.replace("EXC=800", "EXC=80G"), "not a hex status field"),
    ],
)
def test_damaged_masimo_fields_are_rejected_and_named(line: str, why: str) -> None:
    parsed, reason = parse_line(line, UTC)
    assert parsed is None and why in reason, reason


def test_leading_nuls_and_stray_control_bytes_are_skipped_and_counted() -> None:
    p = MasimoProtocol(device_tz=UTC)
    data = b"\x00\x00\x00" + R5.encode() + b"\r\n\x11\x13\x00" + R5.encode() + b"\r\n"
    rs = p.feed(data, NOW)
    assert len(rs) == 6 and p.stray_bytes == 6 and p.stats.frames_bad == 0
    # a control byte inside a line is damage, not padding
    p = MasimoProtocol(device_tz=UTC)
    assert p.feed(R5.replace("BPM", "B\x00PM").encode() + b"\r\n", NOW) == []
    assert p.stats.frames_bad == 1
