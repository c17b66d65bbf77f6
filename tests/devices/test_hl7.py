"""HL7 v2 ORU^R01 (IHE PCD-01) over MLLP: vectors, fuzzing, loopback, pty and TCP end to end.

Every message the protocol decodes here is parsed a second time with ``hl7apy`` (an HL7 parser
independent of the ``hl7`` library the protocol uses) and the OBX values must agree.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.emulators import emulator_class
from devices.emulators.base import PtyServer
from devices.emulators.hl7 import DEVICE_EUI64, HL7Emulator, TcpServer, build_oru
from devices.loopback import run_loopback
from devices.protocols import protocol_class
from devices.protocols.base import Parity
from devices.protocols.hl7 import HL7Protocol, MllpDeframer, mllp_wrap
from devices.readings import MDC_CODE_TO_PARAMETER, Quality, Reading
from devices.scenarios import Link, get_scenario
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import SerialTransport, TcpTransport

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # run_loopback's default device epoch

# Independent of the protocol's tables: what each OBX-3 code must become (devices.md §2.4).
EXPECTED_CODES: dict[int, str] = {
    **MDC_CODE_TO_PARAMETER,
    149546: "nibp_pr",
    149522: "pr_invasive",
    151578: "rr",
    151570: "rr",
    150033: "abp_sys",
    150034: "abp_dia",
    150035: "abp_mean",
}
EXPECTED_TEXT = {"SPO2": "spo2", "PR": "pr", "SYS": "nibp_sys", "DIA": "nibp_dia"}
EXPECTED_TEXT |= {"MAP": "nibp_mean", "NIBP_PR": "nibp_pr", "HR": "hr", "RR": "rr"}


# ---- helpers ------------------------------------------------------------------------------------
def msg(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def msh(
    control_id: str, *, ts: str = "20110602045842+0000", pid: str = "P", ver: str = "2.6"
) -> str:
    return (
        f"MSH|^~\\&|MON^0012A5FFFE000001^EUI-64|ICU|||{ts}||ORU^R01^ORU_R01|{control_id}"
        f"|{pid}|{ver}"
    )


def key(r: Reading) -> tuple[object, ...]:
    """Everything that must not depend on how the bytes were chunked (host_time may)."""
    return (r.parameter, r.value, r.unit, r.mdc, r.device_time, r.quality, r.source)


def decode(data: bytes, proto: HL7Protocol | None = None) -> list[Reading]:
    p = proto or HL7Protocol()
    return p.feed(data, NOW)


def apy_obx(text: str) -> list[dict[str, str]]:
    """OBX fields as hl7apy parses them."""
    parsed = parse_message(text, find_groups=False)
    out = []
    for o in parsed.obx:
        out.append(
            {
                "type": o.obx_2.value if o.obx_2 else "",
                "ids": [c.value for c in o.obx_3.children],
                "value": o.obx_5.value if o.obx_5 else "",
                "unit": [c.value for c in o.obx_6.children] if o.obx_6 else [],
                "status": o.obx_11.value if o.obx_11 else "",
            }
        )
    return out


def apy_expected(text: str) -> Counter[tuple[str, float]]:
    """(parameter, value) pairs a correct decoder must produce, according to hl7apy."""
    exp: Counter[tuple[str, float]] = Counter()
    for o in apy_obx(text):
        if o["type"] != "NM" or not o["value"] or o["status"] in ("D", "I", "N", "O", "S"):
            continue
        ids = o["ids"]
        param = None
        if ids and ids[0].isdigit():
            param = EXPECTED_CODES.get(int(ids[0]))
        elif ids and len(ids) >= 1 and "-" in ids[0]:  # Philips MDIL hex partition-term
            part, term = ids[0].split("-")
            param = EXPECTED_CODES.get((int(part, 16) << 16) | int(term, 16))
        if param is None and ids:
            param = EXPECTED_TEXT.get(ids[0].upper())
        if param is not None:
            exp[(param, float(o["value"]))] += 1
    return exp


def crosscheck(text: str, readings: Iterable[Reading]) -> None:
    """Our readings from ``text`` (decoded alone) hold the same OBX values hl7apy sees."""
    got = Counter((r.parameter, r.value) for r in readings)
    assert got == apy_expected(text)


def frames(stream: bytes) -> list[str]:
    """The ORU texts of a clean MLLP stream (test-side split; no HL7 parsing)."""
    out = []
    for chunk in stream.split(b"\x0b")[1:]:
        body, _, _ = chunk.partition(b"\x1c\x0d")
        out.append(body.decode())
    return out


def acks(proto: HL7Protocol) -> list[str]:
    return frames(proto.outgoing(NOW))


def apy_ack(text: str) -> tuple[str, str]:
    a = parse_message(text, find_groups=False)
    return a.msa.msa_1.value, a.msa.msa_2.value


# ---- vectors from devices.md §2.4 ---------------------------------------------------------------
# IHE PCD TF example from a Philips gateway (hl7.org FHIR DSTU1 device-observation examples).
# devices.md elides MSH-10 and the tail of MSH and OBX 6 with "…"; those are filled in here.
PHILIPS = msg(
    "MSH|^~\\&|HL7^080019FFFF4F6AC0^EUI-64|MMS|||20081211144500||ORU^R01^ORU_R01|PHL0001|P|2.6"
    "|||AL|NE||||||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
    "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.6.1.1|60|/min^/min^UCUM|||||R",
    "OBX|3|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.3.1.1|92|mm[Hg]^mm[Hg]^UCUM|||||R",
    "OBX|6|NM|149522^MDC_BLD_PULS_RATE_INV^MDC|1.2.1.1|60|/min^/min^UCUM|||||R",
)

# NIST PCD-01 NIBP lines (devices.md: unattributed, patient HO2009001^^^NIST^PI).
NIST_TIME = "20110602045842+0000"


def nist_nibp(control_id: str = "NIST0001", *, sys_: str = "120", t: str = NIST_TIME) -> str:
    return msg(
        msh(control_id, ts=t),
        "PID|||HO2009001^^^NIST^PI||Hon^Albert^^^^^L",
        f"OBR|1|AB12345^NIST^0012A5FFFE000001^EUI-64|CD12345^NIST^0012A5FFFE000001^EUI-64"
        f"|528391^MDC_DEV_SPEC_PROFILE_BP^MDC|||{t}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
        "OBX|2||70686^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.1.0.0|||||||X",
        "OBX|3||70687^MDC_DEV_PRESS_BLD_NONINV_CHAN^MDC|1.1.1.0|||||||X",
        f"OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|{sys_}|mm[Hg]^mm[Hg]^UCUM|||||R"
        f"|||{t}",
        f"OBX|5|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.2|80|mm[Hg]^mm[Hg]^UCUM|||||R|||{t}",
        f"OBX|6|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.1.3|93|mm[Hg]^mm[Hg]^UCUM|||||R|||{t}",
        f"OBX|7|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.1.1.4|63|{{beat}}/min^{{beat}}/min^UCUM"
        f"|||||R|||{t}",
    )


# The codes a Mindray HL7 log parser keys on, with the MDC unit codes of devices.md §2.4.
MINDRAY = msg(
    msh("MR0001"),
    "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|71|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
    "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.1|70|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
    "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.2|97|262688^MDC_DIM_PERCENT^MDC|||||R",
    "OBX|4|NM|151578^MDC_TTHOR_RESP_RATE^MDC|1.3.1.1|15|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
    "OBX|5|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.4.1.1|131|266016^MDC_DIM_MMHG^MDC|||||R"
    "|||20110602044500+0000",
    "OBX|6|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.4.1.2|84|266016^MDC_DIM_MMHG^MDC|||||R"
    "|||20110602044500+0000",
    "OBX|7|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.4.1.3|100|266016^MDC_DIM_MMHG^MDC|||||R"
    "|||20110602044500+0000",
    "OBX|8|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC|1.5.1.1|128|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|9|NM|150034^MDC_PRESS_BLD_ART_DIA^MDC|1.5.1.2|79|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|10|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.5.1.3|95|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|11|NM|150344^MDC_TEMP^MDC|1.6.1.1|36.8|268192^MDC_DIM_DEGC^MDC|||||R",
)

# Non-MDC text ids (weynelucas/python-xml-hl7 README: a Shenzhen monitor, there XML-encoded;
# here the same OBX content in ER7 with units %, bpm, mmHg and ranges in OBX-7).
TEXT_IDS = msg(
    msh("TX0001", ver="2.3.1"),
    "OBX|1|NM|SPO2||96|%|90-100||||F",
    "OBX|2|NM|PR||77|bpm|50-120||||F",
    "OBX|3|NM|SYS||118|mmHg|90-160||||F|||20110602045000",
    "OBX|4|NM|DIA||76|mmHg|50-90||||F|||20110602045000",
    "OBX|5|NM|MAP||90|mmHg|60-110||||F|||20110602045000",
    "OBX|6|NM|NIBP_PR||75|bpm|50-120||||F|||20110602045000",
)


def test_registry_and_defaults() -> None:
    assert protocol_class("hl7") is HL7Protocol
    assert emulator_class("hl7") is HL7Emulator
    s = HL7Protocol.default_serial
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits, s.rtscts) == (
        9600,
        8,
        Parity.NONE,
        1,
        False,
    )
    assert 5.0 <= HL7Protocol.quiet_time_s <= 30.0


def test_vector_philips_gateway() -> None:
    proto = HL7Protocol(source="t")
    rs = decode(mllp_wrap(PHILIPS), proto)
    crosscheck(PHILIPS, rs)
    when = datetime(2008, 12, 11, 14, 45, tzinfo=UTC)  # MSH-7; no offset given -> taken as UTC
    assert [key(r) for r in rs] == [
        ("hr", 60.0, "/min", "MDC_ECG_HEART_RATE", when, Quality.NONE, "t"),
        ("abp_mean", 92.0, "mm[Hg]", "MDC_PRESS_BLD_ART_MEAN", when, Quality.NONE, "t"),
        ("pr_invasive", 60.0, "/min", "MDC_BLD_PULS_RATE_INV", when, Quality.NONE, "t"),
    ]
    assert any("without a UTC offset" in n for n in proto.notes)
    assert proto.streaming and proto.stats.frames_ok == 1 and proto.stats.frames_bad == 0
    [ack] = acks(proto)
    assert apy_ack(ack) == ("AA", "PHL0001")
    assert ack.startswith("MSH|^~\\&|KETAMON||HL7^080019FFFF4F6AC0^EUI-64|MMS|")
    assert "|ACK^R01^ACK|" in ack


def test_vector_nist_nibp_and_dedupe() -> None:
    proto = HL7Protocol(source="t")
    text = nist_nibp()
    rs = decode(mllp_wrap(text), proto)
    crosscheck(text, rs)
    when = datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)
    assert [key(r) for r in rs] == [
        ("nibp_sys", 120.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_SYS", when, Quality.NONE, "t"),
        ("nibp_dia", 80.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_DIA", when, Quality.NONE, "t"),
        ("nibp_mean", 93.0, "mm[Hg]", "MDC_PRESS_BLD_NONINV_MEAN", when, Quality.NONE, "t"),
        ("nibp_pr", 63.0, "/min", "MDC_PULS_RATE_NON_INV", when, Quality.NONE, "t"),
    ]
    assert [apy_ack(a) for a in acks(proto)] == [("AA", "NIST0001")]
    # The monitor repeats the same cuff result in its next periodic messages: no new reading,
    # not even after a reconnect; each message is still acknowledged.
    assert decode(mllp_wrap(nist_nibp("NIST0002")), proto) == []
    assert [apy_ack(a) for a in acks(proto)] == [("AA", "NIST0002")]
    proto.reset()
    assert decode(mllp_wrap(nist_nibp("NIST0003")), proto) == []
    later = "20110602050342+0000"
    rs2 = decode(mllp_wrap(nist_nibp("NIST0004", sys_="126", t=later)), proto)
    assert [(r.parameter, r.value) for r in rs2][:1] == [("nibp_sys", 126.0)]
    assert len(rs2) == 4
    assert [apy_ack(a) for a in acks(proto)] == [("AA", "NIST0003"), ("AA", "NIST0004")]


def test_vector_mindray_codes_and_mdc_units() -> None:
    rs = decode(mllp_wrap(MINDRAY))
    crosscheck(MINDRAY, rs)
    got = {r.parameter: (r.value, r.unit) for r in rs}
    assert got == {
        "hr": (71.0, "/min"),
        "pr": (70.0, "/min"),
        "spo2": (97.0, "%"),
        "rr": (15.0, "/min"),
        "nibp_sys": (131.0, "mm[Hg]"),
        "nibp_dia": (84.0, "mm[Hg]"),
        "nibp_mean": (100.0, "mm[Hg]"),
        "abp_sys": (128.0, "mm[Hg]"),
        "abp_dia": (79.0, "mm[Hg]"),
        "abp_mean": (95.0, "mm[Hg]"),
        "temp": (36.8, "Cel"),
    }
    nibp = [r for r in rs if r.parameter.startswith("nibp")]
    assert {r.device_time for r in nibp} == {datetime(2011, 6, 2, 4, 45, tzinfo=UTC)}
    hr = next(r for r in rs if r.parameter == "hr")
    assert hr.device_time == datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)  # from MSH-7
    assert next(r for r in rs if r.parameter == "rr").mdc == "MDC_TTHOR_RESP_RATE"


def test_vector_text_ids() -> None:
    proto = HL7Protocol()
    rs = decode(mllp_wrap(TEXT_IDS), proto)
    crosscheck(TEXT_IDS, rs)
    got = {r.parameter: (r.value, r.unit) for r in rs}
    assert got == {
        "spo2": (96.0, "%"),
        "pr": (77.0, "/min"),
        "nibp_sys": (118.0, "mm[Hg]"),
        "nibp_dia": (76.0, "mm[Hg]"),
        "nibp_mean": (90.0, "mm[Hg]"),
        "nibp_pr": (75.0, "/min"),
    }
    assert proto.stats.frames_bad == 0


def test_mdc_ref_id_without_numeric_code() -> None:
    text = msg(
        msh("REF1"),
        "OBX|1|NM|^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|95|%^%^UCUM|||||R",
        "OBX|2|NM|MDC_ECG_HEART_RATE||88|{beat}/min^{beat}/min^UCUM|||||R",
    )
    rs = decode(mllp_wrap(text))
    assert [(r.parameter, r.value, r.mdc) for r in rs] == [
        ("spo2", 95.0, "MDC_PULS_OXIM_SAT_O2"),
        ("hr", 88.0, "MDC_ECG_HEART_RATE"),
    ]


def test_philips_efficia_mdil_codes() -> None:
    # Efficia CM Data Export Guide (easymanua.ls/philips/efficia-cm-series/manual/925687?p=56):
    # MDIL "<partition>-<term>" in hex; '?' on screen = empty OBX-5 with status X.
    text = msg(
        "MSH|^~\\&|^EfficiaCM||||20140510124500||ORF^R04|MONITORABC000000002D|P|2.3",
        "OBX||NM|0002-4bb8^SpO2^MDIL|||0004-0220^%^MDIL|||||X",
        "OBX||NM|0002-4182^HR^MDIL|||0004-0aa0^bpm^MDIL|||||X",
        "OBX||NM|0002-4182^HR^MDIL||80|0004-0aa0^bpm^MDIL|||||F",
        "OBX||NM|0002-4bb8^SpO2^MDIL||97|0004-0220^%^MDIL|||||F",
    )
    proto = HL7Protocol()
    rs = decode(mllp_wrap(text), proto)
    crosscheck(text, rs)
    assert [(r.parameter, r.value, r.unit) for r in rs] == [
        ("hr", 80.0, "/min"),
        ("spo2", 97.0, "%"),
    ]
    assert proto.stats.frames_bad == 0
    assert apy_ack(acks(proto)[0]) == ("AA", "MONITORABC000000002D")


def test_ge_b40_pcd01_example() -> None:
    # GE B40 HL7 reference (easymanua.ls/ge/b40/manual?p=21), a real PCD-01 sender.
    dev = "|||||||080019FFFE0B4020^B40_GE"
    text = msg(
        msh("B40-1"),
        "OBX|2||69854^MDC_DEV_METER_PRESS_BLD_VMD^MDC|1.13.0.0|||||||X",
        "OBX|3||69855^MDC_DEV_METER_PRESS_BLD_CHAN^MDC|1.13.1.0|||||||X",
        "OBX|4|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC|1.13.1.1|112|266016^MDC_DIM_MMHG^MDC|||||R"
        + dev,
        "OBX|5|NM|150034^MDC_PRESS_BLD_ART_DIA^MDC|1.13.1.2|76|266016^MDC_DIM_MMHG^MDC|||||R"
        + dev,
        "OBX|6|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.13.1.3|95|266016^MDC_DIM_MMHG^MDC|||||R"
        + dev,
        "OBX|7|NM|149522^MDC_BLD_PULS_RATE_INV^MDC|1.13.1.4|80|264864^MDC_DIM_BEAT_PER_MIN^MDC"
        "|||||R" + dev,
        "OBX|11|NM|147842^MDC_ECG_HEART_RATE^MDC|1.5.1.1|80|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
        + dev,
        "OBX|12|NM|148066^MDC_ECG_V_P_C_RATE^MDC|1.5.1.2|0|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
        + dev,
    )
    proto = HL7Protocol()
    rs = decode(mllp_wrap(text), proto)
    crosscheck(text, rs)
    assert [(r.parameter, r.value) for r in rs] == [
        ("abp_sys", 112.0),
        ("abp_dia", 76.0),
        ("abp_mean", 95.0),
        ("pr_invasive", 80.0),
        ("hr", 80.0),
    ]
    assert proto.stats.frames_bad == 0


# ---- quality, units, times ----------------------------------------------------------------------
def one_obx(
    obx: str, *, pid: str = "P", control_id: str = "Q1"
) -> tuple[list[Reading], HL7Protocol]:
    proto = HL7Protocol()
    text = msg(msh(control_id, pid=pid), obx)
    rs = decode(mllp_wrap(text), proto)
    return rs, proto


HR = "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1"


@pytest.mark.parametrize(
    ("status", "flags", "expected"),
    [
        ("R", "", Quality.NONE),
        ("F", "", Quality.NONE),
        ("C", "", Quality.NONE),
        ("", "", Quality.NONE),
        ("P", "", Quality.QUESTIONABLE),
        ("X", "", None),  # issue 16 judgement call 1: a value beside X is withheld
        ("R", "DEMO", Quality.DEMO),  # issue 16 defect 3
        ("W", "", Quality.INVALID),
        ("R", "H", Quality.NONE),  # an alarm-limit flag is not a quality statement
        ("R", "invalid", Quality.INVALID),
        ("R", "H~questionable", Quality.QUESTIONABLE),
        ("R", "test-data", Quality.TEST),
        ("R", "demo-data", Quality.DEMO),
        ("R", "calibration-ongoing", Quality.CALIBRATION),
        ("D", "", None),
        ("I", "", None),
        ("N", "", None),
    ],
)
def test_result_status_and_flags(status: str, flags: str, expected: Quality | None) -> None:
    rs, proto = one_obx(f"{HR}|66|/min^/min^UCUM||{flags}|||{status}")
    if expected is None:
        assert rs == []
    else:
        assert [(r.value, r.quality) for r in rs] == [(66.0, expected)]
    assert proto.stats.frames_bad == 0


@pytest.mark.parametrize(
    ("pid", "expected"), [("P", Quality.NONE), ("T", Quality.TEST), ("D", Quality.DEMO)]
)
def test_processing_id(pid: str, expected: Quality) -> None:
    rs, _ = one_obx(f"{HR}|66|/min^/min^UCUM|||||W", pid=pid)
    assert [r.quality for r in rs] == [Quality.INVALID | expected]


def test_x_without_value_is_skipped() -> None:
    rs, proto = one_obx(f"{HR}||/min^/min^UCUM|||||X")
    assert rs == [] and proto.stats.frames_bad == 0


@pytest.mark.parametrize(
    ("obx", "value", "unit"),
    [
        (
            "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||16|kPa^kPa^UCUM|||||R",
            16 * 760 / 101.325,
            "mm[Hg]",
        ),
        (
            "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||120|^MDC_DIM_MMHG^MDC|||||R",
            120.0,
            "mm[Hg]",
        ),
        ("OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||120||||||R", 120.0, "mm[Hg]"),
        ("OBX|1|NM|150344^MDC_TEMP^MDC||98.6|[degF]^[degF]^UCUM|||||R", 37.0, "Cel"),
        (
            "OBX|1|NM|151562^MDC_RESP_RATE^MDC||12|{breath}/min^{breath}/min^UCUM|||||R",
            12.0,
            "/min",
        ),
        ("OBX|1|SN|150456^MDC_PULS_OXIM_SAT_O2^MDC||^97|%|||||R", 97.0, "%"),
    ],
)
def test_units_normalised(obx: str, value: float, unit: str) -> None:
    rs, proto = one_obx(obx)
    assert len(rs) == 1 and rs[0].unit == unit and rs[0].value == pytest.approx(value)
    assert proto.stats.frames_bad == 0


@pytest.mark.parametrize(
    ("obx", "why"),
    [
        (
            "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||120|262688^MDC_DIM_PERCENT^MDC|||||R",
            "does not fit",
        ),
        ("OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||120|furlong|||||R", "not understood"),
        (f"{HR}|6x|/min|||||R", "not a number"),
        (f"{HR}|nan|/min|||||R", "not a number"),
        (f"{HR}|{'9' * 400}|/min|||||R", "out of range"),
        (f"{HR}|60^1|/min|||||R", "has components"),
        (f"{HR}|60~61|/min|||||R", "repeats"),
        (f"{HR}|60|/min|||||Q", "result status"),
        (f"{HR}|60|/min|||||R|||2011060204X842", "not an HL7 TS"),
        (f"{HR}|60|/min|||||R|||20111302045842", "not a valid date"),
        ("OBX|1|NM|147842^MDC_PULS_OXIM_SAT_O2^MDC||60|/min|||||R", "does not match"),
        ("OBX|1|QQ|147842^MDC_ECG_HEART_RATE^MDC||60|/min|||||R", "value type"),
    ],
)
def test_damaged_obx_is_counted_and_skipped(obx: str, why: str) -> None:
    rs, proto = one_obx(obx)
    assert rs == []
    assert proto.stats.frames_bad == 1 and why in proto.stats.last_error
    # The rest of the message is fine: accepted and acknowledged.
    assert apy_ack(acks(proto)[0]) == ("AA", "Q1")


def test_unknown_codes_and_non_numeric_types_are_ignored_quietly() -> None:
    rs, proto = one_obx("OBX|1|NM|148066^MDC_ECG_V_P_C_RATE^MDC||3|/min|||||R")
    assert rs == [] and proto.stats.frames_bad == 0
    rs, proto = one_obx("OBX|1|ST|147842^MDC_ECG_HEART_RATE^MDC||sinus|||||R")
    assert rs == [] and proto.stats.frames_bad == 0


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("20110602045842+0000", datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)),
        ("20110602102842+0530", datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)),
        ("20110602002842-0430", datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)),
        ("20110602042842-0030", datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)),
        ("20110602045842.25+0000", datetime(2011, 6, 2, 4, 58, 42, 250000, tzinfo=UTC)),
        ("201106020458", datetime(2011, 6, 2, 4, 58, tzinfo=UTC)),
    ],
)
def test_observation_time(ts: str, expected: datetime) -> None:
    rs, _ = one_obx(f"{HR}|60|/min|||||R|||{ts}")
    assert rs[0].device_time == expected
    assert rs[0].device_time.utcoffset() == timedelta(0)


def test_nibp_without_obx14() -> None:
    """OBR-7 gives the time; a repeat of the same value is the same cuff result."""
    proto = HL7Protocol()

    def send(cid: str, obr_t: str, value: int, obx_t: str = "") -> list[Reading]:
        text = msg(
            msh(cid),
            f"OBR|1|||x|||{obr_t}",
            f"OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||{value}|mm[Hg]|||||R|||{obx_t}",
        )
        return decode(mllp_wrap(text), proto)

    first = send("O1", "20110602045000+0000", 120)
    assert [(r.value, r.device_time) for r in first] == [
        (120.0, datetime(2011, 6, 2, 4, 50, tzinfo=UTC))
    ]
    # periodic senders put the message time in OBR-7: a new OBR-7 is not a new measurement
    assert send("O2", "20110602045005+0000", 120) == []
    assert [r.value for r in send("O3", "20110602045010+0000", 121)] == [121.0]
    # no time at all
    assert [r.device_time for r in send("O4", "", 111)] == [None]
    assert send("O5", "", 111) == []
    # the same value again but with its own OBX-14: that is a new measurement
    timed = send("O6", "", 111, "20110602050000+0000")
    assert [(r.value, r.device_time) for r in timed] == [
        (111.0, datetime(2011, 6, 2, 5, 0, tzinfo=UTC))
    ]
    assert any("OBX-14" in n for n in proto.notes)


# ---- message-level problems and ACKs ------------------------------------------------------------
def test_retransmission_is_acked_but_not_stored_twice() -> None:
    proto = HL7Protocol()
    text = msg(msh("RT1"), f"{HR}|60|/min|||||R")
    assert len(decode(mllp_wrap(text), proto)) == 1
    assert decode(mllp_wrap(text), proto) == []
    assert proto.duplicates == 1
    assert [apy_ack(a) for a in acks(proto)] == [("AA", "RT1"), ("AA", "RT1")]
    # Same control id from a monitor that restarted its counter (new MSH-7): a new message.
    again = msg(msh("RT1", ts="20110602050000+0000"), f"{HR}|61|/min|||||R")
    assert [r.value for r in decode(mllp_wrap(again), proto)] == [61.0]


def test_ack_error_for_broken_structure() -> None:
    proto = HL7Protocol()
    text = msg(msh("BAD1"), "PID|||1", "OB#|1|NM|147842^MDC_ECG_HEART_RATE^MDC||60|/min|||||R")
    assert decode(mllp_wrap(text), proto) == []
    assert proto.stats.frames_bad == 1 and "unknown segment id" in proto.stats.last_error
    [ack] = acks(proto)
    parsed = parse_message(ack, find_groups=False)
    assert (parsed.msa.msa_1.value, parsed.msa.msa_2.value) == ("AE", "BAD1")
    assert parsed.err.err_3.value.startswith("100^") and parsed.err.err_4.value == "E"
    assert not proto.streaming


def test_ack_reject_for_other_message_types() -> None:
    proto = HL7Protocol()
    text = msg("MSH|^~\\&|ADT1|H|||20110602045842||ADT^A01^ADT_A01|ADT9|P|2.6", "PID|||1")
    assert decode(mllp_wrap(text), proto) == []
    assert apy_ack(acks(proto)[0]) == ("AR", "ADT9")


@pytest.mark.parametrize(
    "body",
    [
        b"PID|||1\r",  # no MSH
        b"MSH|^~\\&|A|B|||20110602045842||ORU^R01|||2.6\r" + f"{HR}|60|/min|||||R\r".encode(),
        b"MSH",
        b"",
    ],
)
def test_no_ack_without_control_id(body: bytes) -> None:
    proto = HL7Protocol()
    assert decode(mllp_wrap(body), proto) == []
    assert proto.stats.frames_bad == 1
    assert proto.outgoing(NOW) == b""


def test_crlf_segment_endings_and_control_bytes() -> None:
    text = msg(msh("CRLF"), f"{HR}|60|/min|||||R").replace("\r", "\r\n")
    assert [r.value for r in decode(mllp_wrap(text))] == [60.0]
    proto = HL7Protocol()
    bad = msg(msh("CTL"), f"{HR}|6\x010|/min|||||R")
    assert decode(mllp_wrap(bad), proto) == [] and "control byte" in proto.stats.last_error


def test_mllp_client_of_python_hl7_accepts_our_ack() -> None:
    """python-hl7's own MLLPClient sends an ORU and reads back our ACK."""
    from hl7.client import MLLPClient

    proto = HL7Protocol()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[Reading] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                received.extend(proto.feed(data, NOW))
                out = proto.outgoing(NOW)
                if out:
                    conn.sendall(out)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with MLLPClient("127.0.0.1", port) as client:
            reply = client.send_message(nist_nibp("MLLP1"))
        assert reply.startswith(b"\x0b") and reply.endswith(b"\x1c\x0d")
        assert apy_ack(reply[1:-2].decode()) == ("AA", "MLLP1")
    finally:
        th.join(5)
        listener.close()
    assert [r.parameter for r in received] == ["nibp_sys", "nibp_dia", "nibp_mean", "nibp_pr"]


# ---- MLLP framing -------------------------------------------------------------------------------
def test_deframer_junk_and_broken_blocks() -> None:
    a, b = mllp_wrap("MSH|A\r"), mllp_wrap("MSH|B\r")
    d = MllpDeframer()
    ev = d.feed(
        b"xyz" + a + b"\r\n" + b + b"\x0bcut" + a + b"\x0bX\x1c?" + b + b"\x0b" + b"9" * 40
    )
    assert [e.frame for e in ev if e.frame] == [b"MSH|A\r", b"MSH|B\r", b"MSH|A\r", b"MSH|B\r"]
    errors = [e.error for e in ev if e.error]
    assert errors[0].startswith("3 byte(s) outside")  # CR LF between blocks are not junk
    assert "start block inside an open block" in errors[1]
    assert "not 0x0D" in errors[2]
    assert errors[3].startswith("1 byte(s) outside")  # the '?' after the broken end block
    small = MllpDeframer(max_frame=30)
    assert "longer than 30" in small.feed(b"\x0b" + b"x" * 31)[0].error


def test_junk_between_frames_is_counted() -> None:
    proto = HL7Protocol()
    good = mllp_wrap(msg(msh("J1"), f"{HR}|60|/min|||||R"))
    rs = decode(
        b"\x00\xff garbage"
        + good
        + b"more junk"
        + mllp_wrap(msg(msh("J2"), f"{HR}|61|/min|||||R")),
        proto,
    )
    assert [r.value for r in rs] == [60.0, 61.0]
    assert proto.stats.frames_bad == 2
    assert proto.skipped_bytes == len(b"\x00\xff garbage") + len(b"more junk")


# ---- emulator -----------------------------------------------------------------------------------
def test_emulator_message_layout() -> None:
    nist_time = datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)
    text = build_oru(
        "C1",
        datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC),
        hr=72,
        pr=71,
        spo2=98,
        rr=14,
        nibp=(120, 80, 93, nist_time),
    )
    segs = text.split("\r")
    assert segs[0].startswith(f"MSH|^~\\&|KETAMON-EMU^{DEVICE_EUI64}^EUI-64|")
    assert "|ORU^R01^ORU_R01|C1|P|2.6|" in segs[0]
    assert segs[0].endswith("IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO")
    # The NIBP rows are byte-identical to the NIST PCD-01 lines quoted in devices.md §2.4.
    nist = nist_nibp().split("\r")
    assert segs[5:10] == [
        "OBX|2||70686^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.1.0.0|||||||X",
        "OBX|3||70687^MDC_DEV_PRESS_BLD_NONINV_CHAN^MDC|1.1.1.0|||||||X",
        *nist[6:9],
    ]
    assert segs[7] == (
        "OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|120|mm[Hg]^mm[Hg]^UCUM|||||R"
        "|||20110602045842+0000"
    )
    parsed = parse_message(text, find_groups=True)  # validates the ORU_R01 group structure
    assert parsed.msh.msh_10.value == "C1"
    rs = decode(mllp_wrap(text))
    crosscheck(text, rs)
    assert {r.parameter: r.value for r in rs} == {
        "nibp_sys": 120.0,
        "nibp_dia": 80.0,
        "nibp_mean": 93.0,
        "hr": 72.0,
        "pr": 71.0,
        "spo2": 98.0,
        "rr": 14.0,
    }


def test_emulator_cadence_ids_ack_and_retransmit() -> None:
    emu = HL7Emulator(get_scenario("stable"), device_epoch=EPOCH)
    proto = HL7Protocol()
    out = emu.tick(0.0)
    assert len(frames(out)) == 1
    assert emu.tick(2.0) == b""
    # no ACK within 3 s: the same bytes again, once
    assert emu.tick(3.0) == out and emu.retransmits == 1
    assert emu.tick(4.0) == b""
    nxt = emu.tick(5.0)
    ids = [parse_message(f, find_groups=False).msh.msh_10.value for f in frames(out + nxt)]
    assert len(set(ids)) == 2
    # ACK the new message: nothing is retransmitted
    proto.feed(nxt, NOW)
    assert emu.on_host_bytes(proto.outgoing(NOW), 5.1) == b""
    assert emu.acks == {"AA": 1}
    assert emu.tick(8.5) == b"" and emu.retransmits == 1
    # a retransmission the host already stored is ACKed but not stored again
    proto.feed(out, NOW)
    assert proto.feed(out, NOW) == [] and proto.duplicates == 1
    # after a silence only the latest sample is sent, on the 5 s grid
    late = frames(emu.tick(31.0))
    assert len(late) == 1 and "|20260105090030+0000||ORU" in late[0]
    emu.reset()
    assert len(frames(emu.tick(31.05))) == 1  # a new connection starts sending at once


def test_emulator_artifact_injects_junk_and_broken_frames() -> None:
    emu = HL7Emulator(get_scenario("artifact"), device_epoch=EPOCH)
    stream = b"".join(emu.tick(i * 0.05) for i in range(0, 20 * 60))
    assert emu.broken_sent >= 8 and emu.garbage_bytes > 0
    proto = HL7Protocol()
    rs = proto.feed(stream, NOW)
    assert proto.stats.frames_bad >= emu.broken_sent
    assert proto.stats.frames_ok == emu.messages_sent
    assert {r.parameter for r in rs} >= {"hr", "pr", "spo2", "rr", "nibp_sys"}
    errors = " | ".join(proto.stats.errors)
    for why in (
        "outside an MLLP block",
        "inside an open block",
        "not 0x0D",
        "unknown segment id",
        "does not start with an MSH",
    ):
        assert why in errors


# ---- fuzzing ------------------------------------------------------------------------------------
def _emulated_stream(times: Iterable[float], scenario: str = "stable") -> bytes:
    emu = HL7Emulator(get_scenario(scenario), device_epoch=EPOCH)
    return b"".join(mllp_wrap(emu.message(t, f"C{t:.0f}")) for t in times)


STREAM = _emulated_stream([25.0, 30.0, 35.0])  # no NIBP, first NIBP, the same NIBP again
STREAM_READINGS = [key(r) for r in decode(STREAM)]
STREAM_FRAMES = frames(STREAM)


def test_stream_fixture_sanity() -> None:
    assert len(STREAM_FRAMES) == 3
    assert Counter(k[0] for k in STREAM_READINGS) == Counter(
        {"hr": 3, "pr": 3, "spo2": 3, "rr": 3, "nibp_sys": 1, "nibp_dia": 1, "nibp_mean": 1}
    )
    for text in STREAM_FRAMES:
        crosscheck(text, decode(mllp_wrap(text)))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data: bytes) -> None:
    proto = HL7Protocol()
    assert proto.feed(data, NOW) == []
    proto.outgoing(NOW)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_fuzz_split_anywhere_same_readings(cuts: list[int]) -> None:
    proto = HL7Protocol()
    got: list[Reading] = []
    edges = [0, *sorted(cuts), len(STREAM)]
    for a, b in itertools.pairwise(edges):
        got += proto.feed(STREAM[a:b], NOW)
    assert [key(r) for r in got] == STREAM_READINGS
    assert proto.stats.frames_bad == 0


def test_split_at_every_boundary() -> None:
    data = mllp_wrap(nist_nibp("S1")) + b"junk" + mllp_wrap(msg(msh("S2"), f"{HR}|60|/min|||||R"))
    ref = HL7Protocol()
    expected = [key(r) for r in ref.feed(data, NOW)]
    assert len(expected) == 5
    for cut in range(len(data) + 1):
        proto = HL7Protocol()
        got = proto.feed(data[:cut], NOW) + proto.feed(data[cut:], NOW)
        assert [key(r) for r in got] == expected, cut
        assert proto.stats.frames_bad == ref.stats.frames_bad
    proto = HL7Protocol()
    one_by_one = [r for i in range(len(data)) for r in proto.feed(data[i : i + 1], NOW)]
    assert [key(r) for r in one_by_one] == expected


def test_truncated_message_then_good_one() -> None:
    first, second = STREAM_FRAMES[1], STREAM_FRAMES[0]
    wrapped = mllp_wrap(first)
    expected = [key(r) for r in decode(mllp_wrap(second))]
    for cut in range(1, len(wrapped) - 1, 7):
        proto = HL7Protocol()
        got = proto.feed(wrapped[:cut] + mllp_wrap(second), NOW)
        assert [key(r) for r in got] == expected, cut
        assert proto.stats.frames_bad == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=3, max_size=3))
def test_fuzz_junk_between_frames(junk: list[bytes]) -> None:
    pieces = [mllp_wrap(f) for f in STREAM_FRAMES]
    data = junk[0] + pieces[0] + junk[1] + pieces[1] + junk[2] + pieces[2]
    proto = HL7Protocol()
    assert [key(r) for r in proto.feed(data, NOW)] == STREAM_READINGS
    if any(j.strip(b"\r\n") for j in junk):
        assert proto.stats.frames_bad >= 1


def _payload_spans(text: str, offset: int) -> list[range]:
    """Byte ranges of the fields whose damage HL7 cannot detect (values, times, statuses)."""
    spans = []
    pos = offset
    for seg in text.split("\r"):
        fields = seg.split("|")
        wanted = {"MSH": (6, 10), "OBR": (7,), "OBX": (5, 6, 8, 11, 14)}.get(fields[0], ())
        start = pos
        for i, f in enumerate(fields):
            if i in wanted:
                spans.append(range(start, start + len(f)))
            start += len(f) + 1
        pos += len(seg) + 1
    return spans


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(STREAM) - 1), st.integers(min_value=1, max_value=255)
)
def test_fuzz_one_byte_flipped(pos: int, mask: int) -> None:
    damaged = bytearray(STREAM)
    damaged[pos] ^= mask
    proto = HL7Protocol()
    got = proto.feed(bytes(damaged), NOW)
    proto.outgoing(NOW)
    clean = set(STREAM_READINGS)
    spans: list[range] = []
    offset = 0
    for text in STREAM_FRAMES:
        spans += _payload_spans(text, offset + 1)  # + the 0x0B
        offset += len(mllp_wrap(text))
    in_payload = any(pos in s for s in spans)
    for r in got:
        # No checksum in HL7: a changed reading is only possible when the flip hit the value,
        # unit, flags, status or a time stamp itself.
        assert key(r) in clean or in_payload, (pos, mask, r)
    # A damaged message never takes the following ones down with it.
    last_start = len(STREAM) - len(mllp_wrap(STREAM_FRAMES[-1]))
    if pos < last_start:
        last_hr = [k for k in STREAM_READINGS if k[0] == "hr"][-1]
        assert last_hr in {key(r) for r in got}


def test_structural_flips_drop_the_message() -> None:
    """Flips in MLLP bytes and segment ids: that message yields nothing and is counted."""
    middle = STREAM_FRAMES[1]
    start = len(mllp_wrap(STREAM_FRAMES[0]))
    positions = [start, start + 1 + len(middle), start + 2 + len(middle)]  # 0x0B, 0x1C, 0x0D
    seg_start = start + 1
    for seg in middle.split("\r")[:-1]:
        positions += [seg_start, seg_start + 1, seg_start + 2]
        seg_start += len(seg) + 1
    middle_times = {k[4] for k in STREAM_READINGS if k[0] == "hr"}
    middle_hr_time = sorted(t for t in middle_times if t is not None)[1]
    for pos in positions:
        for mask in (0x01, 0x20, 0x80):
            damaged = bytearray(STREAM)
            damaged[pos] ^= mask
            proto = HL7Protocol()
            got = proto.feed(bytes(damaged), NOW)
            assert proto.stats.frames_bad >= 1, (pos, mask)
            assert not [r for r in got if r.parameter == "hr" and r.device_time == middle_hr_time]


# ---- loopback -----------------------------------------------------------------------------------
def _check_values(readings: list[Reading], scenario_name: str) -> None:
    sc = get_scenario(scenario_name)
    for r in readings:
        assert r.device_time is not None
        t = (r.device_time - EPOCH).total_seconds()
        if r.parameter.startswith("nibp"):
            c = sc.cuff(sc.cuff_index_at(t))
            assert c.t_s == t
            assert (
                r.value == {"nibp_sys": c.sys, "nibp_dia": c.dia, "nibp_mean": c.mean}[r.parameter]
            )
        else:
            assert r.value == getattr(sc.vitals(t), r.parameter), (r, t)
        assert r.quality == Quality.NONE


def test_loopback_stable() -> None:
    sc = get_scenario("stable")
    res = run_loopback("hl7", sc, 700.0)
    counts = Counter(r.parameter for r in res.readings)
    cycles = sc.cuff_index_at(700.0 - 1e-9) + 1
    assert cycles == 3
    for p in ("nibp_sys", "nibp_dia", "nibp_mean"):
        assert counts[p] == cycles
    n_messages = len(frames(res.device_to_host))  # 0, 5, ... 700 s
    assert n_messages >= 140
    assert counts["hr"] == counts["pr"] == counts["spo2"] == counts["rr"] == n_messages
    _check_values(res.readings, "stable")
    # every message the host received was ACKed (the loop ends before the last ACK is sent)
    assert len(frames(res.host_to_device)) == n_messages  # every message ACKed
    # each decoded message agrees with hl7apy
    for text in frames(res.device_to_host):
        crosscheck(text, decode(mllp_wrap(text)))


def test_loopback_artifact() -> None:
    sc = get_scenario("artifact")
    res = run_loopback("hl7", sc, 700.0)
    counts = Counter(r.parameter for r in res.readings)
    for p in ("nibp_sys", "nibp_dia", "nibp_mean"):
        assert counts[p] == 3
    ack_codes = Counter(apy_ack(a)[0] for a in frames(res.host_to_device))
    n_messages = ack_codes["AA"]  # every good message is ACKed, the last one too
    assert n_messages >= 140 and ack_codes["AE"] > 10
    # SpO2 reads '?' (no value) while junk flows; everything else arrives with every message
    assert counts["hr"] == n_messages and 100 < counts["spo2"] < n_messages
    _check_values(res.readings, "artifact")
    proto = HL7Protocol(source="hl7-loopback")
    again = proto.feed(res.device_to_host, NOW)
    assert [key(r) for r in again] == [key(r) for r in res.readings]
    assert proto.stats.frames_bad > 100 and proto.skipped_bytes > 0


def test_loopback_cable_pulled_keeps_nibp_count() -> None:
    res = run_loopback("hl7", get_scenario("cable_pulled"), 700.0)
    counts = Counter(r.parameter for r in res.readings)
    assert counts["nibp_sys"] == 3 and counts["hr"] < 140
    _check_values(res.readings, "cable_pulled")


# ---- end to end ---------------------------------------------------------------------------------
def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _fault_cycle(
    server: PtyServer | TcpServer,
    make_transport: Callable[[], SerialTransport | TcpTransport],
    emulator: HL7Emulator,
) -> None:
    proto = HL7Protocol(source="e2e")
    proto.quiet_time_s = 1.0  # type: ignore[misc]  # trip the watchdog quickly in the test
    readings: list[Reading] = []
    events: list[StatusEvent] = []
    lock = threading.Lock()

    def on_readings(rs: list[Reading]) -> None:
        with lock:
            readings.extend(rs)

    def n_readings() -> int:
        with lock:
            return len(readings)

    def seen(state: LinkState, since: int, text: str = "") -> bool:
        return any(e.state is state and text in e.reason for e in events[since:])

    sup = Supervisor(
        make_transport(),
        proto,
        on_readings=on_readings,
        on_status=events.append,
        backoff_s=(0.1, 0.4),
    )
    th = threading.Thread(target=sup.run, daemon=True)
    th.start()
    try:
        _wait(lambda: seen(LinkState.STREAMING, 0) and n_readings() >= 4, 6, "first readings")
        states = [e.state for e in events]
        assert states[:3] == [LinkState.CONNECTING, LinkState.NEGOTIATING, LinkState.STREAMING]
        _wait(lambda: emulator.acks.get("AA", 0) >= 1, 3, "ACKs reaching the monitor")

        mark = len(events)
        server.force_link(Link.PULLED)
        _wait(lambda: seen(LinkState.CONNECTING, mark, "link lost"), 3, "link lost")
        time.sleep(max(0.0, 1.0 - 0.1))
        server.force_link(None)
        before = n_readings()
        _wait(
            lambda: seen(LinkState.STREAMING, mark) and n_readings() > before,
            8,
            "recovery after pull",
        )

        mark = len(events)
        server.force_link(Link.SILENT)
        _wait(lambda: seen(LinkState.NEGOTIATING, mark, "no data"), 4, "watchdog")
        server.force_link(None)
        before = n_readings()
        _wait(
            lambda: seen(LinkState.STREAMING, mark) and n_readings() > before,
            8,
            "recovery after silence",
        )
    finally:
        sup.stop()
        th.join(5)
        server.stop()
    assert not th.is_alive()
    assert {"hr", "pr", "spo2", "rr"} <= {r.parameter for r in readings}
    assert all(r.source == "e2e" for r in readings)


@pytest.mark.pty
@pytest.mark.slow
def test_end_to_end_serial_pty(tmp_path: Path) -> None:
    emu = HL7Emulator(get_scenario("stable"))
    server = PtyServer(emu, speed=10.0, link=tmp_path / "monitor", start_at_s=20.0).start()
    _fault_cycle(
        server, lambda: SerialTransport(str(tmp_path / "monitor"), HL7Protocol.default_serial), emu
    )
    assert server.connections >= 2


@pytest.mark.slow
def test_end_to_end_tcp() -> None:
    emu = HL7Emulator(get_scenario("stable"))
    server = TcpServer(emu, speed=10.0, start_at_s=20.0).start()
    port = server.port
    _fault_cycle(server, lambda: TcpTransport("127.0.0.1", port), emu)
    assert server.port == port  # the monitor's address survives the pulled cable
    assert server.connections >= 2


def test_tcp_server_refuses_while_pulled() -> None:
    server = TcpServer(HL7Emulator(get_scenario("stable")), speed=10.0).start()
    try:
        t = TcpTransport("127.0.0.1", server.port)
        t.open()
        data = b""
        deadline = time.monotonic() + 3
        while b"\x1c\r" not in data and time.monotonic() < deadline:
            data += t.read(65536, 0.1)
        assert data.startswith(b"\x0bMSH|")
        server.force_link(Link.PULLED)
        with pytest.raises(Exception, match=r"closed by peer|reset"):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                t.read(65536, 0.1)
        t.close()
        time.sleep(0.2)
        with pytest.raises(Exception, match="cannot connect"):
            TcpTransport("127.0.0.1", server.port).open()
        server.force_link(None)
        _wait(lambda: _can_connect(server.port), 3, "listener back")
    finally:
        server.stop()


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_time_zone_helper_is_utc() -> None:
    # device_time is always aware UTC, whatever offset the monitor used
    rs, _ = one_obx(f"{HR}|60|/min|||||R|||20110602065842+0200")
    assert rs[0].device_time == datetime(
        2011, 6, 2, 6, 58, 42, tzinfo=timezone(timedelta(hours=2))
    )
    assert rs[0].device_time.tzinfo is UTC


def test_listening_transport_receives_from_a_sender_that_connects(tmp_path: Path) -> None:
    """Many monitors and gateways connect to the receiver: ketamon listens, ACKs, and takes the
    sender back after it disconnects."""
    import socket

    from devices.transports import TcpListenTransport

    capture = run_loopback("hl7", get_scenario("stable"), 60.0).device_to_host
    frames = [f + b"\x1c\r" for f in capture.split(b"\x1c\r") if f.strip()]
    transport = TcpListenTransport("127.0.0.1", 0)
    transport._listen()
    port = transport.port
    proto = HL7Protocol(source="listen")
    readings: list = []
    events: list = []
    sup = Supervisor(
        transport,
        proto,
        on_readings=readings.extend,
        on_status=events.append,
        backoff_s=(0.05, 0.1),
    )
    th = threading.Thread(target=sup.run)
    th.start()
    try:
        for attempt in range(2):  # a sender connects, sends, disconnects; then another
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.settimeout(5)
                for f in frames[:3]:
                    c.sendall(f)
                    ack = c.recv(4096)
                    assert b"MSA|AA|" in ack
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                e.reason.endswith("closed by peer") for e in events[attempt:]
            ):
                time.sleep(0.05)
    finally:
        sup.stop()
        th.join(5)
        transport.shutdown()
    assert {"hr", "spo2"} <= {r.parameter for r in readings}
    assert sum(e.state.value == "streaming" for e in events) >= 2
    assert any("closed by peer" in e.reason for e in events)
