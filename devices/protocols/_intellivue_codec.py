"""Philips IntelliVue MIB/RS232 Data Export: framing, FCS and message layouts.

One implementation shared by the host protocol (:mod:`devices.protocols.intellivue`) and the
monitor emulator (:mod:`devices.emulators.intellivue`), so both ends frame, check and lay out
messages the same way. Everything here is I/O-free and follows the reference
``/work/shared/reference/devices.md`` §2.1 (offsets, codes, test vectors V1–V5).

Wire format in one paragraph: a frame is ``C0 | 11 01 LL LL | user data | FCS lo FCS hi | C1``;
between the flags every ``C0``/``C1``/``7D`` (header, user data *and* FCS) is sent as
``7D, byte ^ 0x20``. The FCS is CRC-16/X-25 over header + user data before escaping. All other
multi-byte fields are big-endian. The user data starts with a session id: ``0D``/``0E``/``0C``/
``09``/``0A``/``19`` for the association layer, ``E1`` for data export (remote operations).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# ---- framing ------------------------------------------------------------------------------------
BOF = 0xC0
EOF = 0xC1
ESC = 0x7D
ESC_XOR = 0x20
PROTOCOL_ID = 0x11  # Data Export protocol
MSG_TYPE = 0x01
HEADER_LEN = 4
FCS_LEN = 2
#: Largest unescaped frame we keep collecting before declaring the line garbage. The monitor's
#: MTU is negotiated at <= 2500 bytes (association request), so 16 KiB is generous.
MAX_FRAME_BYTES = 16384

# ---- CRC-16/X-25 (PPP/HDLC FCS-16): poly 0x1021 reflected = 0x8408, init/xorout 0xFFFF ---------
FCS_INIT = 0xFFFF
#: running the raw register over data + transmitted FCS leaves this constant (RFC 1662)
FCS_GOOD_RESIDUE = 0xF0B8


def _fcs_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0x8408 if reg & 1 else reg >> 1
        table.append(reg)
    return tuple(table)


_FCS_TABLE = _fcs_table()


def fcs_update(data: bytes | bytearray, reg: int = FCS_INIT) -> int:
    """Run the raw (not complemented) FCS register over ``data``."""
    table = _FCS_TABLE
    for b in data:
        reg = (reg >> 8) ^ table[(reg ^ b) & 0xFF]
    return reg


def crc16_x25(data: bytes | bytearray) -> int:
    """The FCS value as transmitted (complemented register); ``b"123456789"`` → ``0x906E``."""
    return fcs_update(data) ^ 0xFFFF


# ---- session / presentation layer ---------------------------------------------------------------
SPDU_CN = 0x0D  # association request
SPDU_AC = 0x0E  # association accepted
SPDU_RF = 0x0C  # refused
SPDU_FN = 0x09  # release request
SPDU_DN = 0x0A  # release response
SPDU_AB = 0x19  # abort
SPDU_DATA = 0xE1  # data export
ASSOCIATION_SPDUS = frozenset({SPDU_CN, SPDU_AC, SPDU_RF, SPDU_FN, SPDU_DN, SPDU_AB})
#: presentation context id used by VSCaptureMP and PERSEUS (and by our emulator)
DEFAULT_CONTEXT_ID = 2

# ROapdus.ro_type
ROIV = 1
RORS = 2
ROER = 3
RORLS = 5
# RORLS linked-id states
RORLS_FIRST = 1
RORLS_NOT_FIRST_NOT_LAST = 2
RORLS_LAST = 3
# command types
CMD_EVENT_REPORT = 0
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_GET = 3
CMD_SET = 4
CMD_CONFIRMED_SET = 5
CMD_CONFIRMED_ACTION = 7

# action and event types
ACT_POLL = 0x0C16  # NOM_ACT_POLL_MDIB_DATA (3094), single poll
ACT_POLL_EXT = 0xF13B  # NOM_ACT_POLL_MDIB_DATA_EXT (61755), extended poll
NOTI_MDS_CREATE = 0x0D06  # NOM_NOTI_MDS_CREAT

# object classes (partition NOM_PART_OBJ = 1)
PART_OBJ = 1
MOC_MDS = 0x0021
MOC_NUMERIC = 0x0006
MOC_WAVE = 0x0009
MOC_ALERT = 0x0036
MOC_PT_DEMOG = 0x002A
DEV_MON_PHYSIO_MULTI_PARAM_MDS = 0x114D  # NOM_DEV_MON_PHYSIO_MULTI_PARAM_MDS, MDS system type

# attribute groups
GRP_ALL = 0x0000
GRP_ALERT = 0x0801
GRP_METRIC_VAL_OBS = 0x0803
GRP_PT_DEMOG = 0x0807
GRP_VMO_DYNAMIC = 0x0810
GRP_VMO_STATIC = 0x0811

# attribute ids
ATTR_POLL_PROFILE_SUPPORT = 0x0001  # NOM_POLL_PROFILE_SUPPORT (association user info)
ATTR_POLL_PROFILE_EXT = 0xF001  # NOM_ATTR_POLL_PROFILE_EXT
ATTR_TIME_PD_POLL = 0xF13E  # poll period (RelativeTime) of an extended poll
ATTR_ID_HANDLE = 0x0921
ATTR_ID_LABEL = 0x0924
ATTR_ID_MODEL = 0x0928
ATTR_MODE_OP = 0x0946
ATTR_NU_CMPD_VAL_OBS = 0x094B
ATTR_NU_VAL_OBS = 0x0950
ATTR_SYS_TYPE = 0x0986
ATTR_TIME_ABS = 0x0987
ATTR_TIME_REL = 0x098F
ATTR_TIME_STAMP_ABS = 0x0990
ATTR_TIME_STAMP_REL = 0x0991
ATTR_VMS_MDS_STAT = 0x09A7

# MDS operating mode (NOM_ATTR_MODE_OP)
OPMODE_UNSPEC = 0x8000
OPMODE_MONITORING = 0x4000
OPMODE_DEMO = 0x2000
OPMODE_SERVICE = 0x1000
OPMODE_STANDBY = 0x0002
OPMODE_CONFIG = 0x0001
MDS_STATUS_OPERATING = 0x0006

# MeasurementState bits of a NuObsValue
MS_INVALID = 0x8000
MS_QUESTIONABLE = 0x4000
MS_UNAVAILABLE = 0x2000
MS_CALIBRATION_ONGOING = 0x1000
MS_TEST_DATA = 0x0800
MS_DEMO_DATA = 0x0400
MS_VALIDATED = 0x0080
MS_EARLY_INDICATION = 0x0040
MS_MSMT_ONGOING = 0x0020
MS_IN_ALARM = 0x0002
MS_ALARM_INHIBITED = 0x0001

# association user info (MDSEUserInfoStd)
MDDL_VERSION1 = 0x80000000
NOMEN_VERSION = 0x40000000
SYST_CLIENT = 0x80000000
SYST_SERVER = 0x00800000
HOT_START = 0x80000000
WARM_START = 0x40000000
COLD_START = 0x20000000
POLL_PROFILE_REV_0 = 0x80000000
P_OPT_DYN_CREATE_OBJECTS = 0x40000000
P_OPT_DYN_DELETE_OBJECTS = 0x20000000
POLL_EXT_PERIOD_NU_1SEC = 0x80000000
POLL_EXT_PERIOD_NU_AVG_12SEC = 0x40000000
POLL_EXT_PERIOD_NU_AVG_60SEC = 0x20000000
POLL_EXT_PERIOD_RTSA = 0x08000000
POLL_EXT_ENUM = 0x04000000

# physiological ids (SCADA partition 2; MDC code = 2 << 16 | id)
NOM_PRESS_BLD_NONINV = 0x4A04
NOM_PRESS_BLD_NONINV_SYS = 0x4A05
NOM_PRESS_BLD_NONINV_DIA = 0x4A06
NOM_PRESS_BLD_NONINV_MEAN = 0x4A07
NOM_PRESS_BLD_NONINV_PULS_RATE = 0xF0E5
NOM_ECG_CARD_BEAT_RATE = 0x4182
NOM_PLETH_PULS_RATE = 0x4822
NOM_PULS_OXIM_SAT_O2 = 0x4BB8
NOM_PULS_OXIM_PERF_REL = 0x4BB0
NOM_RESP_RATE = 0x500A
NOM_AWAY_RESP_RATE = 0x5012
NOM_AWAY_CO2_ET = 0x50B0
NOM_TEMP = 0x4B48

# units (partition 4)
NOM_DIM_DIMLESS = 0x0200
NOM_DIM_PERCENT = 0x0220
NOM_DIM_BEAT_PER_MIN = 0x0AA0
NOM_DIM_RESP_PER_MIN = 0x0AE0
NOM_DIM_KILO_PASCAL = 0x0F03
NOM_DIM_MMHG = 0x0F20
NOM_DIM_FAHR = 0x1140
NOM_DIM_DEGC = 0x17A0

# FLOAT-Type special values (mantissa with exponent 0; 0x800001 is reserved in IEEE 11073)
FLOAT_NAN = 0x007FFFFF
FLOAT_NRES = 0x00800000
FLOAT_POS_INF = 0x007FFFFE
FLOAT_NEG_INF = 0x00800002
FLOAT_RESERVED = 0x00800001
_FLOAT_SPECIALS = {
    FLOAT_NAN: "NaN",
    FLOAT_NRES: "NRes",
    FLOAT_POS_INF: "+INF",
    FLOAT_NEG_INF: "-INF",
    FLOAT_RESERVED: "reserved",
}

# RelativeTime: 1 tick = 1/8 ms = 125 µs
TICKS_PER_S = 8000
REL_TIME_MOD = 1 << 32
#: AbsoluteTime with every byte 0xFF = "not supported / not set" (seen from real monitors)
ABS_TIME_INVALID = b"\xff" * 8


class CodecError(ValueError):
    """A frame or message does not have the documented structure."""


# ---- escaping and frames ------------------------------------------------------------------------
_SPECIAL_RE = re.compile(rb"[\xc0\xc1\x7d]")


def escape(raw: bytes) -> bytes:
    """Apply the transparency rule to the bytes between the flags (header, data and FCS)."""
    return _SPECIAL_RE.sub(lambda m: bytes((ESC, m.group()[0] ^ ESC_XOR)), raw)


def encode_frame(user_data: bytes) -> bytes:
    """Wrap user data in header, FCS (LSB first), transparency and flags."""
    if len(user_data) > 0xFFFF:
        raise ValueError("user data longer than a 16-bit length field allows")
    body = struct.pack(">BBH", PROTOCOL_ID, MSG_TYPE, len(user_data)) + user_data
    body += crc16_x25(body).to_bytes(2, "little")
    return bytes((BOF,)) + escape(body) + bytes((EOF,))


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """One frame boundary found by :class:`Deframer`: good user data, or why it was rejected."""

    payload: bytes | None
    error: str = ""


class Deframer:
    """Streaming frame reader. Feeding the same bytes split anywhere gives the same events.

    Rules (devices.md §2.1, mindleaving's tests): bytes outside a frame are ignored (counted in
    :attr:`garbage_bytes`); ``7D C1`` aborts a frame; a raw ``C0`` inside a frame aborts it and
    starts a new one; an over-long frame is dropped. A completed frame must pass the FCS, carry
    header ``11 01`` and a length field equal to its user-data length.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.garbage_bytes = 0
        self._buf = bytearray()
        self._in_frame = False
        self._escape = False

    def reset(self) -> None:
        self._buf.clear()
        self._in_frame = False
        self._escape = False

    def _start(self) -> None:
        self._buf.clear()
        self._in_frame = True
        self._escape = False

    def _drop(self) -> None:
        self._buf.clear()
        self._in_frame = False
        self._escape = False

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        buf = self._buf
        i, n = 0, len(data)
        while i < n:
            if not self._in_frame:
                j = data.find(BOF, i)
                if j < 0:
                    self.garbage_bytes += n - i
                    break
                self.garbage_bytes += j - i
                self._start()
                i = j + 1
                continue
            if self._escape:
                b = data[i]
                i += 1
                self._escape = False
                if b == BOF:
                    events.append(FrameEvent(None, "frame cut short by a start flag after 0x7D"))
                    self._start()
                elif b == EOF:
                    events.append(FrameEvent(None, "frame aborted by the sender (7D C1)"))
                    self._drop()
                else:
                    buf.append(b ^ ESC_XOR)
                continue
            m = _SPECIAL_RE.search(data, i)
            end = m.start() if m is not None else n
            if end > i:
                buf += data[i:end]
                i = end
            if len(buf) > self.max_frame_bytes:
                events.append(
                    FrameEvent(None, f"frame longer than {self.max_frame_bytes} bytes; dropped")
                )
                self._drop()
                continue
            if m is None:
                break
            b = data[i]
            i += 1
            if b == BOF:
                if buf:
                    events.append(FrameEvent(None, "frame cut short by a new start flag (0xC0)"))
                self._start()
            elif b == EOF:
                events.append(self._finish())
            else:
                self._escape = True
        return events

    def _finish(self) -> FrameEvent:
        raw = bytes(self._buf)
        self._drop()
        if len(raw) < HEADER_LEN + FCS_LEN:
            return FrameEvent(None, f"frame too short ({len(raw)} bytes after unescaping)")
        if fcs_update(raw) != FCS_GOOD_RESIDUE:
            got = int.from_bytes(raw[-2:], "little")
            want = crc16_x25(raw[:-2])
            return FrameEvent(None, f"FCS mismatch (frame says {got:04X}, computed {want:04X})")
        if raw[0] != PROTOCOL_ID or raw[1] != MSG_TYPE:
            return FrameEvent(None, f"unexpected frame header {raw[0]:02X} {raw[1]:02X}")
        length = int.from_bytes(raw[2:4], "big")
        if length != len(raw) - HEADER_LEN - FCS_LEN:
            return FrameEvent(
                None,
                f"length field says {length} bytes, frame carries "
                f"{len(raw) - HEADER_LEN - FCS_LEN}",
            )
        return FrameEvent(raw[HEADER_LEN:-FCS_LEN])


# ---- bounds-checked big-endian reader -----------------------------------------------------------
class Reader:
    """Reads big-endian fields; running past the end raises :class:`CodecError`."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.end:
            raise CodecError(f"{what}: need {n} bytes at offset {self.pos}, have {self.remaining}")
        p = self.pos
        self.pos += n
        return p

    def u8(self, what: str = "u8") -> int:
        return self.data[self._take(1, what)]

    def u16(self, what: str = "u16") -> int:
        p = self._take(2, what)
        return (self.data[p] << 8) | self.data[p + 1]

    def u32(self, what: str = "u32") -> int:
        p = self._take(4, what)
        return int.from_bytes(self.data[p : p + 4], "big")

    def raw(self, n: int, what: str = "bytes") -> bytes:
        p = self._take(n, what)
        return self.data[p : p + n]

    def sub(self, n: int, what: str = "block") -> Reader:
        p = self._take(n, what)
        return Reader(self.data, p, p + n)


# ---- BER-like length indicator (association layer) ----------------------------------------------
def encode_li(n: int) -> bytes:
    """One byte below 0xFF, else ``FF`` + 16-bit length (devices.md §2.1)."""
    if n < 0xFF:
        return bytes((n,))
    return b"\xff" + struct.pack(">H", n)


def read_li(r: Reader) -> int:
    first = r.u8("length indicator")
    return r.u16("long length indicator") if first == 0xFF else first


def _encode_asn1_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    return b"\x82" + struct.pack(">H", n)


def _read_asn1_length(r: Reader) -> int:
    first = r.u8("ASN.1 length")
    if first < 0x80:
        return first
    if first == 0x81:
        return r.u8("ASN.1 length")
    if first == 0x82:
        return r.u16("ASN.1 length")
    raise CodecError(f"unsupported ASN.1 length form 0x{first:02X}")


# ---- FLOAT-Type ---------------------------------------------------------------------------------
def float_special(raw: int) -> str | None:
    """Name of a special FLOAT-Type value (NaN, NRes, ±INF), else None."""
    return _FLOAT_SPECIALS.get(raw & 0xFFFFFF)


def decode_float(raw: int) -> float | None:
    """32-bit FLOAT-Type: signed 8-bit base-10 exponent, signed 24-bit mantissa.

    Returns None for the special values (the monitor has no number to give).
    """
    mantissa = raw & 0xFFFFFF
    if mantissa in _FLOAT_SPECIALS:
        return None
    exponent = (raw >> 24) & 0xFF
    if exponent >= 0x80:
        exponent -= 0x100
    if mantissa >= 0x800000:
        mantissa -= 0x1000000
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    # Divide rather than multiply by 10**-n so 985e-1 comes out as exactly 98.5.
    return mantissa / float(10 ** (-exponent))


def encode_float(value: float | None, max_decimals: int = 3) -> int:
    """FLOAT-Type with the smallest exponent that holds ``value`` (None/non-finite → NaN)."""
    if value is None or not math.isfinite(value):
        return FLOAT_NAN
    for decimals in range(max_decimals + 1):
        scaled = value * float(10**decimals)
        mantissa = round(scaled)
        if abs(scaled - mantissa) < 1e-6 or decimals == max_decimals:
            break
    exponent = -decimals
    # Keep clear of the reserved mantissas (±(2^23 − 3) and beyond).
    while abs(mantissa) > 0x7FFFFD:
        mantissa = round(mantissa / 10)
        exponent += 1
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


# ---- times --------------------------------------------------------------------------------------
def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _from_bcd(b: int) -> int | None:
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        return None
    return hi * 10 + lo


def encode_abs_time(when: datetime | None) -> bytes:
    """AbsoluteTime: 8 BCD bytes century, year, month, day, hour, minute, second, 1/100 s.

    ``when`` is written in UTC; None gives the "not set" value (all 0xFF).
    """
    if when is None:
        return ABS_TIME_INVALID
    t = when.astimezone(UTC)
    return bytes(
        _bcd(x)
        for x in (
            t.year // 100,
            t.year % 100,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.microsecond // 10_000,
        )
    )


def decode_abs_time(raw: bytes) -> datetime | None:
    """Inverse of :func:`encode_abs_time`; None for "not set" or impossible dates.

    The monitor's clock has no zone; it is read as UTC (the host keeps its own receive time).
    The fraction byte is read as BCD hundredths (ignored if it is not valid BCD).
    """
    if len(raw) != 8 or raw == ABS_TIME_INVALID:
        return None
    digits = [_from_bcd(b) for b in raw[:7]]
    if any(d is None for d in digits):
        return None
    century, year, month, day, hour, minute, second = (d or 0 for d in digits)
    hundredths = _from_bcd(raw[7]) or 0
    try:
        return datetime(
            century * 100 + year, month, day, hour, minute, second, hundredths * 10_000, UTC
        )
    except ValueError:
        return None


def rel_ticks(seconds: float) -> int:
    """Seconds → RelativeTime (1/8 ms), wrapped to 32 bits as the monitor's counter does."""
    return round(seconds * TICKS_PER_S) % REL_TIME_MOD


def rel_delta_ticks(later: int, earlier: int) -> int:
    """Signed difference of two 32-bit RelativeTimes, tolerant of one counter wrap (~6.2 days)."""
    d = (later - earlier) % REL_TIME_MOD
    return d - REL_TIME_MOD if d >= REL_TIME_MOD // 2 else d


# ---- attribute lists ----------------------------------------------------------------------------
AVA = tuple[int, bytes]  # (attribute id, value)


def encode_attribute_list(avas: Iterable[AVA]) -> bytes:
    items = list(avas)
    body = b"".join(struct.pack(">HH", aid, len(val)) + val for aid, val in items)
    return struct.pack(">HH", len(items), len(body)) + body


def read_attribute_list(r: Reader) -> list[AVA]:
    count = r.u16("attribute count")
    length = r.u16("attribute list length")
    block = r.sub(length, "attribute list")
    avas: list[AVA] = []
    for _ in range(count):
        aid = block.u16("attribute id")
        alen = block.u16("attribute length")
        avas.append((aid, block.raw(alen, f"attribute 0x{aid:04X}")))
    return avas


@dataclass(frozen=True, slots=True)
class NuObsValue:
    physio_id: int
    state: int
    unit_code: int
    raw_value: int

    @property
    def value(self) -> float | None:
        return decode_float(self.raw_value)

    def encode(self) -> bytes:
        return struct.pack(">HHHI", self.physio_id, self.state, self.unit_code, self.raw_value)


def read_nu_obs_value(r: Reader) -> NuObsValue:
    return NuObsValue(
        r.u16("physio id"), r.u16("measurement state"), r.u16("unit code"), r.u32("FLOAT value")
    )


def decode_nu_values(aid: int, value: bytes) -> list[NuObsValue]:
    """NuObsValues of a NU_VAL_OBS or NU_CMPD_VAL_OBS attribute (empty for other attributes)."""
    r = Reader(value)
    if aid == ATTR_NU_VAL_OBS:
        return [read_nu_obs_value(r)]
    if aid == ATTR_NU_CMPD_VAL_OBS:
        count = r.u16("compound count")
        block = r.sub(r.u16("compound length"), "compound values")
        return [read_nu_obs_value(block) for _ in range(count)]
    return []


def encode_nu_value(v: NuObsValue) -> AVA:
    return (ATTR_NU_VAL_OBS, v.encode())


def encode_nu_compound(values: Sequence[NuObsValue]) -> AVA:
    body = b"".join(v.encode() for v in values)
    return (ATTR_NU_CMPD_VAL_OBS, struct.pack(">HH", len(values), len(body)) + body)


# ---- association layer --------------------------------------------------------------------------
#: Session data of CN/AC SPDUs and the fixed ACSE/presentation prefixes; the same bytes are sent
#: by VSCaptureMP (``aarq_msg_ext_poll2``, vector V3), PERSEUS and mindleaving.
SESSION_DATA_CN_AC = bytes.fromhex("0508130100160102800014020002")
AARQ_PRESENTATION_PREFIX = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A4 80 30 80 02 01 01 06 04 52 01 00 01 30"
    " 80 06 02 51 01 00 00 00 00 30 80 02 01 02 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 30 80"
    " 06 0C 2A 86 48 CE 14 02 01 00 00 00 02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 A0 80 60"
    " 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00 00 BE 80 28 80 06 0C 2A 86 48 CE 14"
    " 02 01 00 00 00 01 01 02 01 02"
)
AARE_PRESENTATION_PREFIX = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A5 80 30 80 80 01 00 81 02 51 01 00 00 30"
    " 80 80 01 00 81 0C 2A 86 48 CE 14 02 01 00 00 00 02 01 00 00 00 00 61 80 30 80 02 01 01 A0"
    " 80 61 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00 00 A2 03 02 01 00 A3 05 A1 03"
    " 02 01 00 BE 80 28 80 02 01 02"
)
USER_INFO_TAG = 0x81
ASSOC_TRAILER = bytes(16)
SESSION_DATA_RF = bytes.fromhex("32 01 00")
SESSION_DATA_AB = bytes.fromhex("11 01 03")
ABORT_PRESENTATION = bytes.fromhex(
    "C1 29 A0 80 A0 80 30 80 02 01 01 06 02 51 01 00 00 00 00 61 80 30 80 02 01 01 A0 80 64 80"
    " 80 01 01 00 00 00 00 00 00 00 00 00 00"
)
RELEASE_REQUEST_PRESENTATION = bytes.fromhex(
    "C1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00 00 00 00"
)
RELEASE_RESPONSE_PRESENTATION = bytes.fromhex(
    "C1 16 61 80 30 80 02 01 01 A0 80 63 80 80 01 00 00 00 00 00 00 00 00 00"
)


@dataclass(frozen=True, slots=True)
class PollProfile:
    """The parts of MDSEUserInfoStd / PollProfileSupport that matter to either side."""

    system_type: int = SYST_CLIENT
    startup_mode: int = COLD_START
    min_poll_period: int = 1000  # RelativeTime ticks (125 ms)
    max_mtu_rx: int = 2500
    max_mtu_tx: int = 1000  # mindleaving: tx <= 1000 on RS-232
    max_bw_tx: int = 0xFFFFFFFF
    options: int = P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS
    ext_options: int = POLL_EXT_PERIOD_NU_1SEC

    def encode_user_info(self) -> bytes:
        ext = struct.pack(">I", self.ext_options) + encode_attribute_list([])
        profile = struct.pack(
            ">IIIIII",
            POLL_PROFILE_REV_0,
            self.min_poll_period,
            self.max_mtu_rx,
            self.max_mtu_tx,
            self.max_bw_tx,
            self.options,
        ) + encode_attribute_list([(ATTR_POLL_PROFILE_EXT, ext)])
        return (
            struct.pack(
                ">IIIII", MDDL_VERSION1, NOMEN_VERSION, 0, self.system_type, self.startup_mode
            )
            + encode_attribute_list([])
            + encode_attribute_list([(ATTR_POLL_PROFILE_SUPPORT, profile)])
        )

    @classmethod
    def decode_user_info(cls, data: bytes) -> PollProfile:
        r = Reader(data)
        r.u32("protocol version")
        r.u32("nomenclature version")
        r.u32("functional units")
        system_type = r.u32("system type")
        startup_mode = r.u32("startup mode")
        read_attribute_list(r)  # option list
        for aid, value in read_attribute_list(r):
            if aid != ATTR_POLL_PROFILE_SUPPORT:
                continue
            p = Reader(value)
            p.u32("poll profile revision")
            min_poll, mtu_rx, mtu_tx, bw, options = (p.u32("poll profile") for _ in range(5))
            ext_options = 0
            for oid, ovalue in read_attribute_list(p):
                if oid == ATTR_POLL_PROFILE_EXT:
                    ext_options = Reader(ovalue).u32("extended poll options")
            return cls(
                system_type, startup_mode, min_poll, mtu_rx, mtu_tx, bw, options, ext_options
            )
        raise CodecError("association user info has no poll profile")


def _association(spdu: int, session_data: bytes, presentation: bytes) -> bytes:
    body = session_data + presentation
    return bytes((spdu,)) + encode_li(len(body)) + body


def _association_with_user_info(spdu: int, prefix: bytes, user_info: bytes) -> bytes:
    pres_body = (
        prefix + bytes((USER_INFO_TAG,)) + _encode_asn1_length(len(user_info)) + user_info
    ) + ASSOC_TRAILER
    presentation = bytes((0xC1,)) + encode_li(len(pres_body)) + pres_body
    return _association(spdu, SESSION_DATA_CN_AC, presentation)


def encode_association_request(profile: PollProfile) -> bytes:
    """Association request (CN) user data; with V3's profile it equals vector V3."""
    return _association_with_user_info(
        SPDU_CN, AARQ_PRESENTATION_PREFIX, profile.encode_user_info()
    )


def encode_association_response(profile: PollProfile) -> bytes:
    """Association accepted (AC) as the monitor sends it, with its own user info."""
    return _association_with_user_info(
        SPDU_AC, AARE_PRESENTATION_PREFIX, profile.encode_user_info()
    )


def encode_refuse() -> bytes:
    return _association(SPDU_RF, SESSION_DATA_RF, b"")


def encode_abort() -> bytes:
    return _association(SPDU_AB, SESSION_DATA_AB, ABORT_PRESENTATION)


def encode_release_request() -> bytes:
    return _association(SPDU_FN, b"", RELEASE_REQUEST_PRESENTATION)


def encode_release_response() -> bytes:
    return _association(SPDU_DN, b"", RELEASE_RESPONSE_PRESENTATION)


def parse_association(user_data: bytes) -> tuple[int, PollProfile | None]:
    """Session id of an association-layer message and, for CN/AC, its poll profile.

    Raises :class:`CodecError` when the length indicators disagree with the data or a CN/AC
    does not carry the expected presentation prefix and user info.
    """
    r = Reader(user_data)
    spdu = r.u8("session id")
    if spdu not in ASSOCIATION_SPDUS:
        raise CodecError(f"0x{spdu:02X} is not an association message")
    length = read_li(r)
    if length != r.remaining:
        raise CodecError(f"session length says {length}, message carries {r.remaining}")
    if spdu not in (SPDU_CN, SPDU_AC):
        return spdu, None
    if r.raw(len(SESSION_DATA_CN_AC), "session data") != SESSION_DATA_CN_AC:
        raise CodecError("unexpected session data in association message")
    if r.u8("presentation header") != 0xC1:
        raise CodecError("missing presentation header 0xC1")
    pres_len = read_li(r)
    if pres_len != r.remaining:
        raise CodecError(f"presentation length says {pres_len}, message carries {r.remaining}")
    prefix = AARQ_PRESENTATION_PREFIX if spdu == SPDU_CN else AARE_PRESENTATION_PREFIX
    if r.raw(len(prefix), "presentation prefix") != prefix:
        raise CodecError("unexpected presentation/ACSE prefix in association message")
    if r.u8("user info tag") != USER_INFO_TAG:
        raise CodecError("missing user info")
    info_len = _read_asn1_length(r)
    return spdu, PollProfile.decode_user_info(r.raw(info_len, "user info"))


# ---- data export (remote operations) ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RemoteOperation:
    """A data-export message: SPpdu + ROapdus + RO(IV|RS|ER|LRS)apdu header, body left raw."""

    context_id: int
    ro_type: int
    invoke_id: int
    command: int  # the error value for ROER
    data: bytes
    linked_state: int = 0
    linked_count: int = 0


def _data_export(ro_type: int, apdu: bytes, context_id: int) -> bytes:
    return struct.pack(">BBHHH", SPDU_DATA, 0, context_id, ro_type, len(apdu)) + apdu


def encode_remote_operation(
    ro_type: int,
    invoke_id: int,
    command: int,
    data: bytes,
    *,
    context_id: int = DEFAULT_CONTEXT_ID,
    linked: tuple[int, int] | None = None,
) -> bytes:
    if ro_type == RORLS:
        state, count = linked or (RORLS_FIRST, 1)
        head = struct.pack(">BBHHH", state, count & 0xFF, invoke_id, command, len(data))
    else:
        head = struct.pack(">HHH", invoke_id, command, len(data))
    return _data_export(ro_type, head + data, context_id)


def parse_remote_operation(user_data: bytes) -> RemoteOperation:
    r = Reader(user_data)
    if r.u8("session id") != SPDU_DATA or r.u8("session pad") != 0:
        raise CodecError("not a data-export message (E1 00)")
    context_id = r.u16("context id")
    ro_type = r.u16("ro_type")
    apdu = r.sub(r.u16("ROapdus length"), "ROapdu")
    state = count = 0
    if ro_type == RORLS:
        state = apdu.u8("linked state")
        count = apdu.u8("linked count")
    elif ro_type not in (ROIV, RORS, ROER):
        raise CodecError(f"unknown ro_type {ro_type}")
    invoke_id = apdu.u16("invoke id")
    command = apdu.u16("command type")
    data = apdu.raw(apdu.u16("apdu length"), "apdu data")
    return RemoteOperation(context_id, ro_type, invoke_id, command, data, state, count)


def managed_object(obj_class: int = MOC_MDS, context: int = 0, handle: int = 0) -> bytes:
    return struct.pack(">HHH", obj_class, context, handle)


@dataclass(frozen=True, slots=True)
class EventReport:
    obj_class: int
    event_time: int
    event_type: int
    info: bytes


def parse_event_report(data: bytes) -> EventReport:
    r = Reader(data)
    obj_class = r.u16("managed object class")
    r.u16("managed object context")
    r.u16("managed object handle")
    event_time = r.u32("event time")
    event_type = r.u16("event type")
    info = r.raw(r.u16("event info length"), "event info")
    return EventReport(obj_class, event_time, event_type, info)


def parse_mds_create_info(info: bytes) -> list[AVA]:
    r = Reader(info)
    r.raw(6, "MDS managed object")
    return read_attribute_list(r)


def encode_mds_create_event(
    invoke_id: int,
    event_time: int,
    attributes: Sequence[AVA],
    *,
    context_id: int = DEFAULT_CONTEXT_ID,
) -> bytes:
    """MDS Create Event Report (ROIV, confirmed event report) as the monitor sends it."""
    info = managed_object() + encode_attribute_list(attributes)
    arg = managed_object() + struct.pack(">IHH", event_time, NOTI_MDS_CREATE, len(info)) + info
    return encode_remote_operation(
        ROIV, invoke_id, CMD_CONFIRMED_EVENT_REPORT, arg, context_id=context_id
    )


def encode_event_report_result(
    invoke_id: int,
    current_time: int,
    event_type: int = NOTI_MDS_CREATE,
    *,
    obj_class: int = MOC_MDS,
    context_id: int = DEFAULT_CONTEXT_ID,
) -> bytes:
    """Event Report Result (RORS) the host returns; for the MDS create this is vector V2."""
    arg = managed_object(obj_class) + struct.pack(">IHH", current_time, event_type, 0)
    return encode_remote_operation(
        RORS, invoke_id, CMD_CONFIRMED_EVENT_REPORT, arg, context_id=context_id
    )


@dataclass(frozen=True, slots=True)
class PollRequest:
    action_type: int
    poll_number: int
    obj_partition: int
    obj_code: int
    attr_group: int
    attributes: tuple[AVA, ...] = ()

    @property
    def period_ticks(self) -> int | None:
        for aid, value in self.attributes:
            if aid == ATTR_TIME_PD_POLL and len(value) == 4:
                return int.from_bytes(value, "big")
        return None


def encode_poll_request(
    invoke_id: int,
    poll_number: int,
    obj_code: int,
    attr_group: int,
    *,
    extended: bool,
    period_ticks: int | None = None,
    context_id: int = DEFAULT_CONTEXT_ID,
) -> bytes:
    """Single (``0C16``) or extended (``F13B``) poll request; V1 is the extended form."""
    req = struct.pack(">HHHH", poll_number, PART_OBJ, obj_code, attr_group)
    if extended:
        attrs = (
            [] if period_ticks is None else [(ATTR_TIME_PD_POLL, struct.pack(">I", period_ticks))]
        )
        req += encode_attribute_list(attrs)
    action = ACT_POLL_EXT if extended else ACT_POLL
    arg = managed_object() + struct.pack(">IHH", 0, action, len(req)) + req
    return encode_remote_operation(
        ROIV, invoke_id, CMD_CONFIRMED_ACTION, arg, context_id=context_id
    )


def parse_poll_request(data: bytes) -> PollRequest:
    """ActionArgument of a confirmed-action ROIV carrying a (single or extended) poll request."""
    r = Reader(data)
    r.raw(6, "managed object")
    r.u32("scope")
    action = r.u16("action type")
    body = r.sub(r.u16("action length"), "action argument")
    if action not in (ACT_POLL, ACT_POLL_EXT):
        raise CodecError(f"action 0x{action:04X} is not a poll")
    poll_number = body.u16("poll number")
    partition = body.u16("object partition")
    code = body.u16("object code")
    group = body.u16("attribute group")
    attrs: tuple[AVA, ...] = ()
    if action == ACT_POLL_EXT and body.remaining:
        attrs = tuple(read_attribute_list(body))
    return PollRequest(action, poll_number, partition, code, group, attrs)


@dataclass(frozen=True, slots=True)
class Observation:
    context_id: int
    handle: int
    attributes: tuple[AVA, ...]


@dataclass(frozen=True, slots=True)
class PollReply:
    action_type: int
    poll_number: int
    sequence_number: int | None  # extended replies only
    rel_time: int
    abs_time: bytes
    obj_partition: int
    obj_code: int
    attr_group: int
    observations: tuple[Observation, ...]


def parse_action_result(data: bytes) -> tuple[int, bytes]:
    """ActionResult of a confirmed-action RORS/RORLS → (action type, action data)."""
    r = Reader(data)
    r.raw(6, "managed object")
    action = r.u16("action type")
    return action, r.raw(r.u16("action result length"), "action result")


def parse_poll_reply(action_type: int, data: bytes) -> PollReply:
    """PollMdibDataReply(Ext) with its PollInfoList flattened into observations."""
    r = Reader(data)
    poll_number = r.u16("poll number")
    seq = r.u16("sequence number") if action_type == ACT_POLL_EXT else None
    rel = r.u32("relative time")
    abs_raw = r.raw(8, "absolute time")
    partition = r.u16("polled object partition")
    code = r.u16("polled object code")
    group = r.u16("polled attribute group")
    observations: list[Observation] = []
    n_contexts = r.u16("poll info count")
    contexts = r.sub(r.u16("poll info length"), "poll info list")
    for _ in range(n_contexts):
        context_id = contexts.u16("context id")
        n_obs = contexts.u16("observation count")
        obs_block = contexts.sub(contexts.u16("observation list length"), "observation list")
        for _ in range(n_obs):
            handle = obs_block.u16("object handle")
            observations.append(
                Observation(context_id, handle, tuple(read_attribute_list(obs_block)))
            )
    return PollReply(
        action_type, poll_number, seq, rel, abs_raw, partition, code, group, tuple(observations)
    )


def encode_poll_reply(
    *,
    invoke_id: int,
    action_type: int,
    poll_number: int,
    rel_time: int,
    abs_time: bytes = ABS_TIME_INVALID,
    obj_code: int = MOC_NUMERIC,
    attr_group: int = GRP_ALL,
    observations: Sequence[tuple[int, Sequence[AVA]]] = (),
    sequence_number: int = 0,
    mds_context: int = 0,
    linked: tuple[int, int] | None = None,
    context_id: int = DEFAULT_CONTEXT_ID,
) -> bytes:
    """Poll result as the monitor sends it: RORS, or RORLS when ``linked=(state, count)``.

    ``observations`` are (object handle, attributes) pairs, all in one SingleContextPoll.
    """
    reply = struct.pack(">H", poll_number)
    if action_type == ACT_POLL_EXT:
        reply += struct.pack(">H", sequence_number)
    reply += struct.pack(">I", rel_time) + abs_time
    reply += struct.pack(">HHH", PART_OBJ, obj_code, attr_group)
    if observations:
        obs = b"".join(struct.pack(">H", h) + encode_attribute_list(a) for h, a in observations)
        single = struct.pack(">HHH", mds_context, len(observations), len(obs)) + obs
        reply += struct.pack(">HH", 1, len(single)) + single
    else:
        reply += struct.pack(">HH", 0, 0)
    result = managed_object() + struct.pack(">HH", action_type, len(reply)) + reply
    ro_type = RORLS if linked is not None else RORS
    return encode_remote_operation(
        ro_type, invoke_id, CMD_CONFIRMED_ACTION, result, context_id=context_id, linked=linked
    )
