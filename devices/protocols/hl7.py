"""HL7 v2 ORU^R01 (IHE PCD-01 "DEC") numerics over MLLP, on a TCP socket or a serial line.

Wire format (devices.md §2.4): every message is an MLLP block ``0x0B <message> 0x1C 0x0D``;
segments end in ``0x0D``. The receiver answers each message with an ``ACK`` whose MSA-2 repeats
the message's MSH-10. Observations are OBX segments: OBX-3 ``<MDC code>^<MDC ref id>^MDC``,
OBX-5 the value, OBX-6 the unit (MDC ``266016^MDC_DIM_MMHG^MDC`` or UCUM ``mm[Hg]^mm[Hg]^UCUM``),
OBX-11 the result status and OBX-14 the observation time.

Parsing is done by the ``hl7`` (python-hl7) library; this module only frames MLLP, checks the
fields that carry a reading, and maps codes, units and status to :class:`Reading` objects.

HL7 and MLLP carry **no checksum**. Whatever integrity checking the format allows is done here
(issue 11 §3, issue 16), so a flipped bit is rejected wherever it changes the form of a field:
the block must be closed by ``0x1C 0x0D``; the message must be printable text with known segment
ids, the standard separators ``|^~\\&`` in MSH-1/MSH-2 and a readable MSH; OBX-1 must be a
number; OBX-2 an HL7 value type; OBX-3's MDC ref id (OBX-3.2) must be the ref id of the numeric
code in OBX-3.1 (or a known vendor alias), and a ref id one character off a known one is damage;
OBX-4 must be a containment id of a metric (``1.2.1.1``, no level 0) or a plain vendor id; OBX-5
a plain decimal number, not negative for a quantity that cannot be, and not one digit off a
vendor "no value" sentinel; OBX-6 a known unit that fits the parameter, its MDC code and ref id
agreeing; OBX-11 a Table 0085 status; time stamps valid HL7 TS. What no receiver of this format
can detect: a digit flipped into another digit inside a value (``120`` -> ``121``), a time stamp
or a containment id, and one status letter flipped into another valid one (``R`` -> ``P``).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import hl7

from devices.protocols import mdc
from devices.protocols.base import DeviceProtocol, Parity, SerialSettings
from devices.readings import Quality, Reading

# ---- MLLP ---------------------------------------------------------------------------------------
SB = 0x0B  # start block <VT>
EB = 0x1C  # end block <FS>
CR = 0x0D
MLLP_START = b"\x0b"
MLLP_END = b"\x1c\x0d"
#: A monitor's ORU is a few kB; anything much longer is a lost end block, not a message.
MAX_FRAME_BYTES = 256 * 1024
_FRAME_SPECIAL = re.compile(b"[\x0b\x1c]")


def mllp_wrap(message: str | bytes) -> bytes:
    """Put one HL7 message into an MLLP block."""
    body = message.encode("utf-8") if isinstance(message, str) else message
    return MLLP_START + body + MLLP_END


@dataclass(frozen=True, slots=True)
class MllpEvent:
    """One result of de-framing: a complete block (``frame``) or a problem (``error``)."""

    frame: bytes | None = None
    error: str = ""
    skipped: int = 0  # bytes thrown away with this event


class MllpDeframer:
    """Splits a byte stream into MLLP blocks; tolerant of junk between blocks.

    Bytes outside a block (other than CR/LF, which some senders put between blocks) are counted
    and reported as one error per run when the next block starts, so feeding the same stream in
    any chunking yields the same events.
    """

    _HUNT, _IN_FRAME, _AFTER_EB = range(3)

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self.reset()

    def reset(self) -> None:
        self._state = self._HUNT
        self._buf = bytearray()
        self._junk = 0
        #: total bytes thrown away (junk between blocks, broken blocks)
        self.skipped_bytes = 0

    def _flush_junk(self, out: list[MllpEvent]) -> None:
        if self._junk:
            out.append(
                MllpEvent(
                    error=f"{self._junk} byte(s) outside an MLLP block (no 0x0B start) skipped",
                    skipped=self._junk,
                )
            )
            self._junk = 0

    def _junk_bytes(self, chunk: bytes) -> None:
        n = len(chunk) - chunk.count(b"\r") - chunk.count(b"\n")
        self._junk += n
        self.skipped_bytes += n

    def _drop(self, out: list[MllpEvent], why: str) -> None:
        n = len(self._buf) + 1  # + the start block
        self.skipped_bytes += n
        out.append(MllpEvent(error=why, skipped=n))
        self._buf.clear()

    def feed(self, data: bytes) -> list[MllpEvent]:
        out: list[MllpEvent] = []
        i, n = 0, len(data)
        while i < n:
            if self._state == self._HUNT:
                j = data.find(MLLP_START, i)
                if j < 0:
                    self._junk_bytes(data[i:])
                    break
                self._junk_bytes(data[i:j])
                self._flush_junk(out)
                self._buf.clear()
                self._state = self._IN_FRAME
                i = j + 1
            elif self._state == self._IN_FRAME:
                m = _FRAME_SPECIAL.search(data, i)
                j = m.start() if m else n
                self._buf += data[i:j]
                if len(self._buf) > self.max_frame:
                    self._drop(out, f"MLLP block longer than {self.max_frame} bytes; dropped")
                    self._state = self._HUNT
                    i = j
                    continue
                if m is None:
                    break
                if data[j] == SB:
                    self._drop(
                        out,
                        f"MLLP start block inside an open block: truncated message of "
                        f"{len(self._buf)} bytes dropped",
                    )
                    # stay IN_FRAME: this start block opens the next message
                else:
                    self._state = self._AFTER_EB
                i = j + 1
            else:  # _AFTER_EB
                b = data[i]
                if b == CR:
                    out.append(MllpEvent(frame=bytes(self._buf)))
                    self._buf.clear()
                    self._state = self._HUNT
                    i += 1
                    continue
                self._drop(out, f"MLLP end block 0x1C followed by 0x{b:02X}, not 0x0D; dropped")
                self._state = self._HUNT  # the byte is looked at again while hunting
        return out


# ---- code tables --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Observation:
    parameter: str
    mdc: str  # MDC reference id of the code that was matched
    unit: str  # UCUM unit readings are emitted in
    episodic: bool = False
    origin: str = ""
    code: int | None = None


def _from_term(t: mdc.MdcTerm) -> Observation:
    return Observation(t.parameter, t.refid, t.unit, t.episodic, t.origin, t.code)


#: Numeric MDC code (partition << 16 | term, as in OBX-3.1) -> observation: the complete table
#: of what a chair monitor sends, with its sources, is :mod:`devices.protocols.mdc`.
CODE_TO_OBSERVATION: dict[int, Observation] = {c: _from_term(t) for c, t in mdc.BY_CODE.items()}
#: MDC reference id text (OBX-3.2, or OBX-3.1 when a sender puts the text there) -> observation.
REFID_TO_OBSERVATION: dict[str, Observation] = {r: _from_term(t) for r, t in mdc.BY_REFID.items()}
#: Plain text ids of non-MDC senders (devices.md §2.4: a Shenzhen monitor's ORU), plus HR/RR.
TEXT_TO_OBSERVATION: dict[str, Observation] = {
    "SPO2": CODE_TO_OBSERVATION[150456],
    "PR": CODE_TO_OBSERVATION[149530],
    "SYS": CODE_TO_OBSERVATION[150021],
    "DIA": CODE_TO_OBSERVATION[150022],
    "MAP": CODE_TO_OBSERVATION[150023],
    "NIBP_PR": CODE_TO_OBSERVATION[149546],
    "HR": CODE_TO_OBSERVATION[147842],
    "RR": CODE_TO_OBSERVATION[151562],
}

#: MDC unit codes (OBX-6.1) -> UCUM (sources in devices.protocols.mdc)
MDC_UNIT_CODES: dict[int, str] = dict(mdc.UNIT_CODES)
#: unit text (MDC ref id, UCUM code, or what some senders write), lower case -> UCUM
UNIT_TEXT: dict[str, str] = {
    "mdc_dim_mmhg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "mmhg": "mm[Hg]",
    "mdc_dim_kilo_pascal": "kPa",
    "kpa": "kPa",
    "mdc_dim_beat_per_min": "/min",
    "mdc_dim_resp_per_min": "/min",
    "mdc_dim_per_min": "/min",
    "/min": "/min",
    "1/min": "/min",
    "min-1": "/min",
    "{beat}/min": "/min",
    "{beats}/min": "/min",
    "{breath}/min": "/min",
    "{breaths}/min": "/min",
    "{resp}/min": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "bpm": "/min",
    "rpm": "/min",
    "brpm": "/min",
    "mdc_dim_percent": "%",
    "%": "%",
    "mdc_dim_dimless": "1",
    "1": "1",
    "{ratio}": "1",
    "mdc_dim_degc": "Cel",
    "cel": "Cel",
    "degc": "Cel",
    "°c": "Cel",
    "mdc_dim_fahr": "[degF]",
    "[degf]": "[degF]",
    "degf": "[degF]",
}
_KPA_TO_MMHG = 760.0 / 101.325


def _convert(value: float, unit: str, target: str, parameter: str = "") -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None if they measure different things."""
    if unit == target:
        return value
    if unit == "kPa" and target == "mm[Hg]":
        return value * _KPA_TO_MMHG
    if unit == "[degF]" and target == "Cel":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "1" and parameter == "pi":
        # Perfusion index in MDC_DIM_DIMLESS (issue 16 defect 4): Philips reports
        # NOM_PULS_OXIM_PERF_REL in NOM_DIM_DIMLESS with the number the monitor shows as %
        # (the IntelliVue decoder has always taken it 1:1); the same here.
        return value
    return None


_MDIL = re.compile(r"([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})")


def mdil_to_code(text: str) -> int | None:
    """Philips MDIL ``<partition>-<term>`` in hex (Efficia CM export) -> numeric MDC code."""
    m = _MDIL.fullmatch(text)
    if m is None:
        return None
    return (int(m.group(1), 16) << 16) | int(m.group(2), 16)


def _numeric_code(text: str) -> int | None:
    if text.isdigit() and len(text) <= 9:
        return int(text)
    return mdil_to_code(text)


# ---- status and "no value": the HL7 table -----------------------------------------------------
# Every entry names its source. A value that means "no value" never becomes a reading.
#
# OBX-11 observation result status, HL7 v2.6 Table 0085 -> quality; None = no result to report.
# Judgement call 1 of issue 16 (a gateway sample sends X on ordinary values): Table 0085 defines X
# as "results cannot be obtained for this observation", and IHE PCD-01 uses X only on the
# MDS/VMD/channel rows that carry no value (devices.md §2.4). A number beside X is therefore not a
# result: it is withheld (counted in HL7Protocol.withheld, noted once), never stored - not even
# flagged invalid, because a flagged wrong number is still a wrong number in the record. The
# Efficia CM's '?' (an empty OBX-5 with X) gives no reading either way.
_STATUS_QUALITY: dict[str, Quality | None] = {
    "": Quality.NONE,  # not valued: PCD-01 senders always send R; older ones leave it empty
    "F": Quality.NONE,  # Table 0085: final
    "R": Quality.NONE,  # Table 0085: entered, not verified - what PCD-01 devices send
    "C": Quality.NONE,  # Table 0085: correction
    "U": Quality.NONE,  # Table 0085: changed to final without retransmitting results
    "P": Quality.QUESTIONABLE,  # Table 0085: preliminary
    "W": Quality.INVALID,  # Table 0085: posted as wrong (kept, flagged, for the record's sake)
    "X": None,  # Table 0085: results cannot be obtained (see above)
    "D": None,  # Table 0085: delete
    "I": None,  # Table 0085: specimen in lab, pending
    "N": None,  # Table 0085: not asked for
    "O": None,  # Table 0085: order detail only
    "S": None,  # Table 0085: partial
}
# OBX-8 abnormal flags that are measurement statuses rather than normal/abnormal range flags.
_STATUS_WORDS: dict[str, Quality] = {
    # IEEE 11073-10201 MeasurementStatus as the HL7 FHIR POCD code system spells it (as PCD-01
    # devices put it in OBX-8):
    "invalid": Quality.INVALID,
    "not-available": Quality.INVALID,
    "questionable": Quality.QUESTIONABLE,
    "early-indication": Quality.QUESTIONABLE,
    "msmt-ongoing": Quality.QUESTIONABLE,
    "calibration-ongoing": Quality.CALIBRATION,
    "test-data": Quality.TEST,
    "demo-data": Quality.DEMO,
    # issue 16 defect 3: a monitor in demo mode marks OBX-8 with DEMO (compared case-blind)
    "demo": Quality.DEMO,
}
# MSH-11.1 processing id, HL7 Table 0103: P production, T training, D debugging. T -> TEST,
# D -> DEMO: both mark data that is not from a real patient.
_PROCESSING_QUALITY: dict[str, Quality] = {"T": Quality.TEST, "D": Quality.DEMO}
# Vendor "no value" sentinels in OBX-5: the number is a code, not a measurement. issue 16
# defect 2: a Mindray gateway sends -999 (SpO2, HR) and -99.9 (temperature).
SENTINELS: dict[float, str] = {
    -999.0: "Mindray gateway 'no value' (issue 16: SpO2, HR)",
    -99.9: "Mindray gateway 'no value' (issue 16: temperature)",
}
_SENTINEL_TEXT = ("-999", "-99.9")
#: quantities that are never negative; a '-' in their OBX-5 is damage or an unknown sentinel
_NON_NEGATIVE = frozenset(
    {
        *("nibp_sys", "nibp_dia", "nibp_mean", "nibp_pr", "hr", "pr", "pr_invasive", "spo2"),
        *("rr", "etco2", "pi"),
    }
)
# HL7 table 0125 value types; anything else in OBX-2 is a damaged segment.
_VALUE_TYPES = frozenset(
    {
        *("AD", "CE", "CF", "CK", "CN", "CNE", "CP", "CWE", "CX", "DR", "DT", "DTM", "ED", "FT"),
        *("ID", "MA", "MO", "NA", "NM", "PN", "RP", "SN", "ST", "TM", "TN", "TS", "TX", "XAD"),
        *("XCN", "XON", "XPN", "XTN"),
    }
)
# Segments an ORU / ORF may carry (v2.3 - 2.7, incl. PCD-01's PRT); Z-segments are allowed too.
_SEGMENT_IDS = frozenset(
    {
        *("MSH", "SFT", "UAC", "PID", "PD1", "NTE", "NK1", "PV1", "PV2", "ORC", "OBR", "TQ1"),
        *("TQ2", "CTD", "OBX", "FT1", "CTI", "SPM", "PRT", "EVN", "DSC", "QRD", "QRF", "MSA"),
        *("ERR", "QAK"),
    }
)
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TS = re.compile(
    r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?(?:[+-]\d{4})?"
)
# OBX-4 observation sub-id: the PCD-01 containment path MDS.VMD.CHANNEL.METRIC (``1.2.1.1``) or a
# plain vendor id (letters first). Anything else is a damaged field.
_SUB_ID = re.compile(r"\d{1,5}(?:\.\d{1,5}){0,7}|[A-Za-z][A-Za-z0-9_-]{0,19}")
# an OBX-3 identifier that starts like an MDC code but runs on into other characters
_DAMAGED_CODE = re.compile(r"\d{4,}[^0-9-]")  # (LOINC "8867-4" and MDIL keep their "-")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


# Time stamps are checked for form and calendar only. A window around MSH-7 would catch flipped
# year/month digits but also drop every reading of a monitor whose own clock is unset (OBX-14 in
# 2000 behind a gateway with a correct MSH-7): a wrong device time is kept beside the host time,
# a lost reading is not. So a flipped digit in a time stamp is one of the undetectable changes.


def format_ts(when: datetime) -> str:
    """HL7 TS in UTC with an explicit offset, to the second (PCD-01 style)."""
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


class _MessageError(Exception):
    """The message as a whole can not be used (ACK with AE/AR)."""

    def __init__(self, why: str, code: str = "207", ack: str = "AE") -> None:
        super().__init__(why)
        self.code = code  # HL7 table 0357 error code for ERR-3
        self.ack = ack


class _ObxError(Exception):
    """One OBX can not be used; the rest of the message still can."""


def _field(seg: Any, n: int, comp: int = 1, rep: int = 1) -> str:
    """Field ``n`` (component ``comp``) of a python-hl7 segment, unescaped; '' if absent."""
    try:
        return str(seg.extract_field(1, n, rep, comp, 1))
    except Exception:  # the library raises IndexError/KeyError/... on short paths
        return ""


#: coding systems seen in OBX-3.3 / OBX-6.3 of monitors (PCD-01: MDC and UCUM; Philips MDIL;
#: HL7 Table 0396 ISO+ / ANSI+ units; L local; LN LOINC). Others are accepted unless they are a
#: known name with one character changed or added: the next '|' or '^' flipped into a letter.
_CODING_SYSTEMS = frozenset({"MDC", "UCUM", "MDIL", "ISO+", "ANSI+", "L", "LN", "ISO"})


def _damaged_coding_system(name: str) -> bool:
    if not name or name in _CODING_SYSTEMS:
        return False
    return any(
        mdc.one_char_apart(name, k) or (len(name) == len(k) + 1 and name.startswith(k))
        for k in _CODING_SYSTEMS
        if len(k) > 1
    )


def _whole_field(seg: Any, n: int) -> str:
    """Field ``n`` as sent, separators included ('' if absent)."""
    try:
        return str(seg(n)) if n < len(seg) else ""
    except Exception:
        return ""


def _repetitions(seg: Any, n: int) -> int:
    try:
        return len(seg(n)) if n < len(seg) else 0
    except Exception:
        return 0


class HL7Protocol(DeviceProtocol):
    """Receives ORU^R01 (and Efficia-style ORF^R04) messages and acknowledges each one."""

    name = "hl7"
    # HL7 over a serial adapter (Philips Efficia CM, Mindray DEC serial): devices.md §3b says the
    # line settings are NOT verified; 9600 8N1 without flow control is the common default.
    default_serial = SerialSettings(
        baudrate=9600, bytesize=8, parity=Parity.NONE, stopbits=1, rtscts=False
    )
    # Monitors send every 1-5 s (the emulator every 5 s); three missed messages = silent link.
    quiet_time_s = 15.0
    # A PCD-01 message with 4 periodic numerics + the latest NIBP: ~1.4 kB every 5 s (~280 B/s
    # measured on the emulator's stream, ACKs not counted).
    nominal_bytes_per_s = 280.0

    #: how many recent message keys / NIBP times are remembered for de-duplication
    MEMORY: ClassVar[int] = 256

    def __init__(self, source: str = "") -> None:
        super().__init__(source)
        self._deframer = MllpDeframer()
        self._acks: list[bytes] = []
        self._ack_seq = 0
        # De-duplication survives reset(): a monitor that reconnects (or retransmits an
        # un-ACKed message) repeats data the host has already stored.
        self._seen_messages: deque[tuple[str, str, str]] = deque(maxlen=self.MEMORY)
        self._seen_episodic: deque[tuple[str, datetime]] = deque(maxlen=self.MEMORY)
        self._last_episodic_value: dict[str, float] = {}
        #: observations that are worth telling the user once (e.g. time stamps without offset)
        self.notes: list[str] = []
        self.duplicates = 0
        #: numbers withheld because OBX-11 said the result cannot be obtained ('X')
        self.withheld = 0
        #: vendor "no value" sentinels (-999, -99.9) seen in OBX-5
        self.sentinels = 0

    # ---- DeviceProtocol ---------------------------------------------------------------------
    def on_connect(self, now: datetime) -> bytes:
        # Monitors push ORU messages unsolicited; nothing to ask for.
        self._streaming = False
        return b""

    def reset(self) -> None:
        super().reset()
        self._deframer.reset()
        self._acks.clear()

    def summary(self) -> list[str]:
        out = list(self.notes)
        if self.sentinels:
            out.append(f"{self.sentinels} vendor 'no value' sentinel(s) (-999, -99.9) not stored")
        if self.withheld:
            out.append(f"{self.withheld} value(s) beside OBX-11 'X' withheld")
        if self.duplicates:
            out.append(
                f"{self.duplicates} retransmitted message(s) acknowledged, not stored again"
            )
        return out

    @property
    def skipped_bytes(self) -> int:
        return self._deframer.skipped_bytes

    def outgoing(self, now: datetime) -> bytes:
        if not self._acks:
            return b""
        out = b"".join(self._acks)
        self._acks.clear()
        return out

    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        self.stats.bytes_in += len(data)
        readings: list[Reading] = []
        for event in self._deframer.feed(data):
            if event.frame is None:
                self.stats.bad_frame(event.error)
                continue
            try:
                readings.extend(self._message(event.frame, now))
            except Exception as exc:  # last line of defence: feed() never raises
                self.stats.bad_frame(f"internal error decoding an HL7 message: {exc!r}")
        self.stats.readings += len(readings)
        return readings

    # ---- one message ------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 20:
            self.notes.append(text)

    def _message(self, frame: bytes, now: datetime) -> list[Reading]:
        try:
            text = frame.decode("utf-8")
        except UnicodeDecodeError:
            text = frame.decode("latin-1")  # MSH-18 other than UTF-8/ASCII; numerics are ASCII
        # Some gateways end segments with CR LF or LF; HL7 wants CR only.
        text = text.replace("\r\n", "\r").replace("\n", "\r")
        segments = [s for s in text.split("\r") if s.strip()]
        if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
            self.stats.bad_frame("MLLP block does not start with an MSH segment")
            return []
        try:
            msh_msg = hl7.parse(segments[0])
            msh = msh_msg.segment("MSH")
        except Exception as exc:
            self.stats.bad_frame(f"MSH segment unreadable: {exc}")
            return []
        control_id = _field(msh, 10)
        try:
            return self._oru(msh_msg, msh, segments, control_id, now)
        except _MessageError as exc:
            self.stats.bad_frame(f"HL7 message {control_id or '(no MSH-10)'}: {exc}")
            if control_id:
                self._queue_ack(msh_msg, msh, now, exc.ack, str(exc), exc.code)
            return []

    def _oru(
        self, msh_msg: Any, msh: Any, segments: list[str], control_id: str, now: datetime
    ) -> list[Reading]:
        if not control_id:
            raise _MessageError("MSH-10 message control id is empty", "101")
        if segments[0][3] != "|" or segments[0][4:9] not in ("^~\\&|", "^~\\&#"):
            # PCD-01 (and every monitor seen) uses the default separators; a flipped bit in
            # MSH-1/MSH-2 would silently re-split every field of the message.
            raise _MessageError(
                f"MSH-1/MSH-2 separators {segments[0][3:8]!r} are not the standard '|^~\\&'",
                "207",
            )
        for i, s in enumerate(segments):
            bad = _CONTROL_CHARS.search(s)
            if bad:
                raise _MessageError(f"control byte 0x{ord(bad.group()):02X} inside the message")
            sid = s[:3]
            if not _SEGMENT_ID.fullmatch(sid) or (sid not in _SEGMENT_IDS and sid[0] != "Z"):
                raise _MessageError(f"unknown segment id {sid!r}", "100")
            if len(s) > 3 and s[3] != segments[0][3]:
                raise _MessageError(f"segment {sid!r} not followed by the field separator", "100")
            if sid == "MSH" and i > 0:
                raise _MessageError("more than one MSH in one MLLP block", "100")
        msg_type = _field(msh, 9)
        if msg_type not in ("ORU", "ORF"):
            raise _MessageError(f"message type {msg_type!r} is not ORU/ORF", "200", ack="AR")
        try:
            msg = hl7.parse("\r".join(segments))
        except Exception as exc:
            raise _MessageError(f"message could not be parsed: {exc}", "102") from exc

        key = (_field(msh, 3), _field(msh, 7), control_id)
        if key in self._seen_messages:
            # A retransmission of a message already stored (our ACK was lost): ACK again only.
            self.duplicates += 1
            self._streaming = True
            self._queue_ack(msg, msh, now, "AA")
            return []

        base_quality = _PROCESSING_QUALITY.get(_field(msh, 11), Quality.NONE)
        msh_time = self._message_time(msh, "MSH-7")
        readings: list[Reading] = []
        obr_time: datetime | None = None
        obx_no = 0
        for seg in msg:
            sid = str(seg[0])
            if sid == "OBR":
                obr_time = self._message_time(seg, "OBR-7")
            elif sid == "OBX":
                obx_no += 1
                try:
                    r = self._obx(seg, base_quality, obr_time, msh_time, now)
                except _ObxError as exc:
                    self.stats.bad_frame(f"HL7 message {control_id}, OBX #{obx_no}: {exc}")
                    continue
                if r is not None:
                    readings.append(r)
        self._seen_messages.append(key)
        self.stats.frames_ok += 1
        self._streaming = True
        self._queue_ack(msg, msh, now, "AA")
        return readings

    def _message_time(self, seg: Any, where: str) -> datetime | None:
        try:
            return self._time(_field(seg, 7), where)
        except _ObxError as exc:  # a broken MSH-7/OBR-7 concerns every OBX of the message
            raise _MessageError(str(exc), "102") from exc

    def _time(self, value: str, where: str) -> datetime | None:
        """HL7 TS -> aware UTC datetime. No offset: taken as UTC (and noted)."""
        if not value:
            return None
        if not _TS.fullmatch(value):
            raise _ObxError(f"{where} time stamp {value!r} is not an HL7 TS")
        try:
            parsed = hl7.parse_datetime(value)
        except (ValueError, OverflowError) as exc:
            raise _ObxError(f"{where} time stamp {value!r} is not a valid date") from exc
        when: datetime = parsed
        if when.tzinfo is None:
            self._note("HL7 time stamps without a UTC offset were taken as UTC")
            return when.replace(tzinfo=UTC)
        if value[-5] == "-" and value[-4:-2] == "00":
            # python-hl7 0.4.5 loses the sign of offsets like -0030 (zero hours); fix it up.
            when = when.replace(tzinfo=None) + timedelta(minutes=int(value[-2:]))
            return when.replace(tzinfo=UTC)
        return when.astimezone(UTC)

    def _observation(self, seg: Any) -> Observation | None:
        ident, text = _field(seg, 3, 1), _field(seg, 3, 2)
        code = _numeric_code(ident)
        by_code = CODE_TO_OBSERVATION.get(code) if code is not None else None
        by_refid = REFID_TO_OBSERVATION.get(text.upper()) or REFID_TO_OBSERVATION.get(
            ident.upper()
        )
        if by_code is not None:
            # The numeric code is authoritative; an MDC ref id of another code means OBX-3 is
            # damaged - a flipped digit turns 151578 into 151570, both respiration rates -
            # unless it is a known vendor label for that code (devices.protocols.mdc). Vendors'
            # free-text labels (not MDC ref ids) are not compared: devices.md §2.4.
            aliases = mdc.VENDOR_REFID_ALIASES.get(by_code.code or 0, frozenset())
            if (
                by_refid is not None
                and by_refid.mdc != by_code.mdc
                and text.upper() not in aliases
            ):
                raise _ObxError(f"OBX-3 code {ident} does not match its ref id {text!r}")
            if (
                by_refid is None
                and text.startswith("MDC_")
                and mdc.one_char_apart(text, by_code.mdc)
            ):
                # One character off the code's own ref id: a flipped bit in OBX-3.2 (or in
                # OBX-3.1, turning it into a neighbouring code). Either way, not trustworthy.
                raise _ObxError(f"OBX-3 ref id {text!r} is damaged (code {ident})")
            return by_code
        if by_refid is not None:
            return by_refid
        if code is None:
            if _DAMAGED_CODE.match(ident) or "MDC_" in ident:
                # digits run into text ("147842ZMDC_ECG…"): a '^' of OBX-3 flipped
                raise _ObxError(f"OBX-3 identifier {ident[:24]!r} is damaged")
            return TEXT_TO_OBSERVATION.get(ident.upper())
        if text.startswith("MDC_") and any(
            mdc.one_char_apart(text, r) for r in REFID_TO_OBSERVATION
        ):
            # An unknown code beside a ref id one character off a known one: a flipped bit.
            raise _ObxError(f"OBX-3 {ident}^{text} is damaged")
        return None

    def _unit(self, seg: Any, obs: Observation) -> str:
        ident, text = _field(seg, 6, 1), _field(seg, 6, 2)
        if not ident and not text:
            return obs.unit  # no unit given: the MDC code fixes the quantity
        unit: str | None = None
        code = _numeric_code(ident)
        if code is not None:
            unit = MDC_UNIT_CODES.get(code)
        if unit is None:
            unit = UNIT_TEXT.get(ident.lower()) or UNIT_TEXT.get(text.lower())
        if unit is None:
            raise _ObxError(f"unit {ident or text!r} not understood for {obs.parameter}")
        if code is not None and text.upper().startswith("MDC_DIM_"):
            # An MDC unit code with its ref id: both must name the same unit (a flipped bit in
            # either turns 266016 into another code or the text into another name).
            by_text = UNIT_TEXT.get(text.lower())
            if by_text is not None and by_text != unit:
                raise _ObxError(f"OBX-6 unit code {ident} does not match {text!r}")
        return unit

    def _obx(
        self,
        seg: Any,
        base_quality: Quality,
        obr_time: datetime | None,
        msh_time: datetime | None,
        now: datetime,
    ) -> Reading | None:
        vtype = _field(seg, 2)
        if vtype and vtype not in _VALUE_TYPES:
            raise _ObxError(f"OBX-2 value type {vtype!r} is not an HL7 value type")
        if not vtype and _whole_field(seg, 5):
            # device/channel rows have neither type nor value; a value without a type is a
            # damaged OBX-2 ("NM" -> "N^" / "^M"), which would drop the reading unnoticed
            raise _ObxError("OBX-5 has a value but OBX-2 no value type")
        if vtype not in ("NM", "SN"):
            return None  # device/channel rows (empty type), text, waveforms
        set_id = _field(seg, 1)
        if set_id and not set_id.isdigit():
            raise _ObxError(f"OBX-1 set id {set_id[:12]!r} is not a number")
        for n in (3, 6):
            if _damaged_coding_system(_field(seg, n, 3)):
                raise _ObxError(f"OBX-{n}.3 coding system {_field(seg, n, 3)!r} is damaged")
        obs = self._observation(seg)
        if obs is None:
            return None  # a quantity we do not record
        channel = _field(seg, 4)
        if channel != _whole_field(seg, 4):
            raise _ObxError(f"OBX-4 sub-id {_whole_field(seg, 4)[:20]!r} has components")
        if channel and not _SUB_ID.fullmatch(channel):
            raise _ObxError(f"OBX-4 sub-id {channel[:20]!r} is malformed")
        if channel[:1].isdigit() and "0" in channel.split("."):
            # PCD-01 containment: level 0 names the MDS/VMD/channel row itself, never a metric
            raise _ObxError(f"OBX-4 {channel!r} is not a metric's containment id")
        status = _field(seg, 11)
        if status not in _STATUS_QUALITY:
            raise _ObxError(f"OBX-11 result status {status!r} unknown")
        quality = _STATUS_QUALITY[status]
        if quality is None:
            if status == "X" and _field(seg, 5, 1).strip() not in ("", '""'):
                self.withheld += 1
            return None
        if _repetitions(seg, 5) > 1:
            raise _ObxError("OBX-5 repeats for a single numeric")
        if vtype == "NM" and "^" in _whole_field(seg, 5):
            # NM has no components; a '^' here means the fields have shifted (damaged '|').
            raise _ObxError("OBX-5 numeric value has components")
        raw = _field(seg, 5, 1)
        if vtype == "SN":  # structured numeric: <comparator>^<num1>; only '=' or none is exact
            if raw not in ("", "="):
                return None
            raw = _field(seg, 5, 2)
        if "&" in _whole_field(seg, 5):
            # a number has no subcomponents: an '&' here is a flipped digit or separator
            raise _ObxError("OBX-5 numeric value has subcomponents")
        if not raw.strip() or raw == '""':
            return None  # no value: the monitor shows '?' or '---'
        if raw != raw.strip():
            # HL7 NM has no blanks; a space is one flipped bit away from '0' ("60" -> "6 ")
            raise _ObxError(f"OBX-5 value {raw!r} has blanks around the number")
        if not _NUMBER.fullmatch(raw):
            raise _ObxError(f"OBX-5 value {raw!r} of {obs.parameter} is not a number")
        unit = self._unit(seg, obs)
        if float(raw) in SENTINELS:
            self.sentinels += 1
            return None
        if any(mdc.one_char_apart(raw, t) for t in _SENTINEL_TEXT):
            raise _ObxError(f"OBX-5 {raw} is one digit off a 'no value' sentinel (damaged)")
        if raw.startswith("-") and obs.parameter in _NON_NEGATIVE:
            # a rate, a saturation, a pressure in a cuff or an index is never below zero: the
            # sign is a damaged field (or an unknown vendor sentinel), not a measurement
            raise _ObxError(f"OBX-5 {raw}: {obs.parameter} cannot be negative")
        value = _convert(float(raw), unit, obs.unit, obs.parameter)
        if value is None:
            raise _ObxError(f"unit {unit} does not fit {obs.parameter} ({obs.unit})")
        if not math.isfinite(value):  # 400 digits parse as inf
            raise _ObxError(f"OBX-5 value of {obs.parameter} is out of range")
        for r in range(1, _repetitions(seg, 8) + 1):
            quality |= _STATUS_WORDS.get(_field(seg, 8, 1, r).lower(), Quality.NONE)
        quality |= base_quality
        obx_time = self._time(_field(seg, 14), "OBX-14")
        measured = obx_time or obr_time
        if obs.episodic:
            # NIBP: monitors repeat the last cuff result in every periodic message. A new
            # OBX-14 (the measurement's own time) makes a new reading. Without OBX-14 only a
            # changed value does: OBR-7 is the *message's* time on periodic senders (GE B40
            # style), so keying on it would store the same cuff result every few seconds.
            if obx_time is not None:
                key = (obs.parameter, obx_time)
                if key in self._seen_episodic:
                    return None
                self._seen_episodic.append(key)
            else:
                if self._last_episodic_value.get(obs.parameter) == value:
                    return None
                self._note("NIBP without OBX-14: a repeated identical value counts as one reading")
            self._last_episodic_value[obs.parameter] = value
        device_time = measured if obs.episodic else (measured or msh_time)
        return Reading(
            parameter=obs.parameter,
            value=value,
            unit=obs.unit,
            host_time=now,
            mdc=obs.mdc,
            device_time=device_time,
            quality=quality,
            source=self.source,
            origin=obs.origin,
            channel=channel,
        )

    # ---- acknowledgements -------------------------------------------------------------------
    def _queue_ack(
        self,
        msg: Any,
        msh: Any,
        now: datetime,
        code: str,
        error: str = "",
        error_code: str = "207",
    ) -> None:
        self._ack_seq += 1
        ack_id = f"KM{now.astimezone(UTC):%y%m%d%H%M%S}{self._ack_seq % 10000:04d}"
        try:
            ack = build_ack(msg, msh, now, code, ack_id, error, error_code)
        except Exception as exc:  # an odd MSH must not cost the readings already decoded
            self.stats.bad_frame(f"could not build the ACK for {_field(msh, 10)!r}: {exc!r}")
            return
        self._acks.append(mllp_wrap(ack))


def build_ack(
    msg: Any,
    msh: Any,
    now: datetime,
    code: str,
    ack_id: str,
    error: str = "",
    error_code: str = "207",
) -> str:
    """An original-mode ACK for ``msg`` built with python-hl7's containers.

    Like ``hl7.Message.create_ack`` but with our own clock and control id (that helper reads
    ``datetime.utcnow()``, deprecated since Python 3.12, and draws a random id).
    """
    ack = msg.create_segment([msg.create_field(["MSH"])])
    ack.assign_field(str(msh(1)), 1)
    ack.assign_field(str(msh(2)), 2)
    ack.assign_field("KETAMON", 3)  # sending application: us
    ack.assign_field(str(msh(3)) if len(msh) > 3 else "", 5)  # receiving: the monitor
    ack.assign_field(str(msh(4)) if len(msh) > 4 else "", 6)
    ack.assign_field(format_ts(now), 7)
    trigger = _field(msh, 9, 2)
    ack.assign_field("ACK", 9, 1, 1)
    ack.assign_field(trigger, 9, 1, 2)
    ack.assign_field("ACK", 9, 1, 3)
    ack.assign_field(ack_id, 10)
    ack.assign_field(_field(msh, 11) or "P", 11)
    ack.assign_field(_field(msh, 12) or "2.6", 12)
    msa = msg.create_segment([msg.create_field(["MSA"])])
    msa.assign_field(code, 1)
    msa.assign_field(_field(msh, 10), 2)
    segments = [ack, msa]
    if code != "AA":
        text = msg.escape(error[:80])
        msa.assign_field(text, 3)
        err = msg.create_segment([msg.create_field(["ERR"])])
        err.assign_field(error_code, 3, 1, 1)
        err.assign_field(text, 3, 1, 2)
        err.assign_field("HL70357", 3, 1, 3)
        err.assign_field("E", 4)  # severity: error
        segments.append(err)
    return str(msg.create_message(segments))


def readings_by_parameter(readings: Iterable[Reading]) -> dict[str, list[Reading]]:
    """Group readings by parameter (handy for tests and the decode command)."""
    out: dict[str, list[Reading]] = {}
    for r in readings:
        out.setdefault(r.parameter, []).append(r)
    return out
