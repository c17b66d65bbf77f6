"""GE Datex-Ohmeda S/5 Computer Interface: framing and record layout (devices.md §2.2).

One implementation shared by :mod:`devices.protocols.datex` (host side) and
:mod:`devices.emulators.datex` (monitor side), so both ends agree on every byte.

Wire format: ``7E | escaped(record + checksum) | 7E``. Inside a frame ``7E`` is sent as
``7D 5E`` and ``7D`` as ``7D 5D``. The checksum is the 8-bit sum of the *unescaped* record
bytes (the spec's rule). VSCapture and icu_devices sum the escaped pair on transmit instead; that
only goes unnoticed while a request contains no ``7E``/``7D`` byte, so it is not reproduced here.

Records are little-endian packed structs: a 40-byte header (length, DRI level, Unix time, main
type and up to eight subrecord descriptors) followed by the subrecords.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FLAG = 0x7E
ESC = 0x7D
_ESCAPED = {0x5E: FLAG, 0x5D: ESC}  # receiver: byte after 7D with bit 5 set again

HEADER_LEN = 40
MAX_DATA_LEN = 1450
MAX_RECORD_LEN = HEADER_LEN + MAX_DATA_LEN
#: A frame longer than this on the wire (every byte escaped, plus checksum) cannot be valid.
MAX_WIRE_LEN = 2 * (MAX_RECORD_LEN + 1)
MAX_SUBRECORDS = 8

# Main types (r_maintype)
MT_PHDB = 0
MT_WAVE = 1
MT_ALARM = 4
MT_NETWORK = 5

# PHDB subrecord types (sr_type); 0xFF ends the descriptor list.
SR_PHDB_REQUEST = 0
SR_DISPLAYED = 1
SR_TREND_10S = 2
SR_TREND_60S = 3
SR_AUX_INFO = 4
SR_END = 0xFF

# PHDB classes: bits 8–11 of cl_drilvl_subt in a data subrecord; request mask bits.
CLASS_BASIC = 0
CLASS_EXT1 = 1
CLASS_EXT2 = 2
CLASS_EXT3 = 3
CLASS_AUX = 4
REQ_BASIC = 0x0000
REQ_DENY_BASIC = 0x0001
REQ_EXT1 = 0x0002
REQ_EXT2 = 0x0004
REQ_EXT3 = 0x0008

# tx_ival special values in a PHDB request
TX_SINGLE_SHOT = -1
TX_STOP = 0
TX_MIN_PERIODIC_S = 5

# DRI levels ('95 … '15)
DRI_LEVEL_2009 = 10

# Special field values: every field is signed 16-bit, anything <= -32001 is not a measurement.
DATA_INVALID_LIMIT = -32001
DATA_INVALID = -32767
DATA_NOT_UPDATED = -32766
DATA_DISCONT = -32765
DATA_UNDER_RANGE = -32764
DATA_OVER_RANGE = -32763
DATA_NOT_CALIBRATED = -32762
SPECIAL_NAMES: dict[int, str] = {
    DATA_INVALID: "invalid",
    DATA_NOT_UPDATED: "not updated",
    DATA_DISCONT: "discontinuity",
    DATA_UNDER_RANGE: "under range",
    DATA_OVER_RANGE: "over range",
    DATA_NOT_CALIBRATED: "not calibrated",
}

# Group status bits (first u32 of every group header)
ST_EXISTS = 1 << 0
ST_ACTIVE = 1 << 1
# NIBP-specific status bits (devices.md §2.2)
NIBP_AUTO = 1 << 3
NIBP_STAT = 1 << 4
NIBP_MEASURING = 1 << 5
NIBP_STASIS = 1 << 6
NIBP_CALIBRATING = 1 << 7
NIBP_OLDER_60S = 1 << 8

PHDB_REQUEST_LEN = 9
PHDB_CLASS_DATA_LEN = 270
PHDB_SUBRECORD_LEN = 4 + PHDB_CLASS_DATA_LEN + 4  # time + class data + marker/res/cl_drilvl_subt


@dataclass(frozen=True, slots=True)
class GroupLayout:
    offset: int  # inside the 270-byte class data
    fields: tuple[str, ...]  # i16 fields after the 6-byte group header


#: Basic class groups used here (offsets from devices.md §2.2; each group = status u32, label
#: u16, then the i16 fields).
BASIC_GROUPS: dict[str, GroupLayout] = {
    "ecg": GroupLayout(0, ("hr", "st1", "st2", "st3", "imp_rr")),
    "p1": GroupLayout(16, ("sys", "dia", "mean", "hr")),
    "p2": GroupLayout(30, ("sys", "dia", "mean", "hr")),
    "p3": GroupLayout(44, ("sys", "dia", "mean", "hr")),
    "p4": GroupLayout(58, ("sys", "dia", "mean", "hr")),
    "nibp": GroupLayout(72, ("sys", "dia", "mean", "hr")),
    "t1": GroupLayout(86, ("temp",)),
    "t2": GroupLayout(94, ("temp",)),
    "t3": GroupLayout(102, ("temp",)),
    "t4": GroupLayout(110, ("temp",)),
    "spo2": GroupLayout(118, ("spo2", "pr", "ir_amp", "svo2")),
    "co2": GroupLayout(132, ("et", "fi", "rr", "amb_press")),
}


@dataclass(frozen=True, slots=True)
class Group:
    """One group of the basic class: header words and its i16 fields in layout order."""

    status: int = 0
    label: int = 0
    values: tuple[int, ...] = ()

    @property
    def exists(self) -> bool:
        return bool(self.status & ST_EXISTS)

    def get(self, layout: GroupLayout, name: str) -> int:
        return self.values[layout.fields.index(name)]


def absent_group(name: str) -> Group:
    """A group whose module is not present: status 0 and every field ``DATA_INVALID``."""
    return Group(0, 0, (DATA_INVALID,) * len(BASIC_GROUPS[name].fields))


def is_special(value: int) -> bool:
    return value <= DATA_INVALID_LIMIT


# ---- checksum and framing --------------------------------------------------------------------
def checksum(record: bytes) -> int:
    """8-bit unsigned sum of the unescaped record bytes."""
    return sum(record) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in (FLAG, ESC):
            out += bytes((ESC, b & ~0x20 & 0xFF))  # clear bit 5: 7E -> 5E, 7D -> 5D
        else:
            out.append(b)
    return bytes(out)


def frame(record: bytes, *, checksum_byte: int | None = None) -> bytes:
    """Wrap a record for the wire; ``checksum_byte`` overrides the sum (to make bad frames)."""
    c = checksum(record) if checksum_byte is None else checksum_byte & 0xFF
    return bytes((FLAG,)) + escape(record + bytes((c,))) + bytes((FLAG,))


@dataclass(frozen=True, slots=True)
class FrameResult:
    """A complete frame: ``record`` (checksum verified and stripped) or ``error``."""

    record: bytes | None
    error: str = ""


class Deframer:
    """Splits the byte stream at ``7E`` flags, unescapes and checks the checksum.

    ``7E`` always delimits, so two adjacent frames (``… 7E 7E …``) give an empty gap that is
    skipped. Bytes before the first flag are reported once as noise (we joined mid-frame or the
    start flag was damaged). The result does not depend on how the stream is split into chunks.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._synced = False
        self._overflow = False

    def reset(self) -> None:
        self._buf.clear()
        self._synced = False
        self._overflow = False

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FrameResult]:
        out: list[FrameResult] = []
        start = 0
        while start <= len(data):
            idx = data.find(FLAG, start)
            if idx < 0:
                self._append(data[start:])
                break
            self._append(data[start:idx])
            result = self._close()
            if result is not None:
                out.append(result)
            start = idx + 1
        return out

    def _append(self, chunk: bytes) -> None:
        if self._overflow or not chunk:
            return
        self._buf += chunk
        if len(self._buf) > MAX_WIRE_LEN:
            # Never buffer without bound on a line that lost its flags; drop until the next 7E.
            self._overflow = True
            self._buf.clear()

    def _close(self) -> FrameResult | None:
        """A flag arrived: finish whatever was collected since the previous one."""
        wire = bytes(self._buf)
        overflow = self._overflow
        synced = self._synced
        self._buf.clear()
        self._overflow = False
        self._synced = True
        if overflow:
            return FrameResult(None, f"frame longer than {MAX_WIRE_LEN} bytes without a 7E flag")
        if not wire:
            return None
        if not synced:
            return FrameResult(None, f"{len(wire)} bytes of noise before the first 7E flag")
        return decode_wire(wire)


def unescape(wire: bytes) -> tuple[bytes | None, str]:
    out = bytearray()
    i = 0
    n = len(wire)
    while i < n:
        b = wire[i]
        if b == ESC:
            if i + 1 >= n:
                return None, "frame ends in a 7D escape byte"
            nxt = wire[i + 1]
            real = _ESCAPED.get(nxt)
            if real is None:
                return None, f"invalid escape 7D {nxt:02X} (only 7D 5E and 7D 5D are defined)"
            out.append(real)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out), ""


def decode_wire(wire: bytes) -> FrameResult:
    """Frame content between two flags -> verified record."""
    content, err = unescape(wire)
    if content is None:
        return FrameResult(None, err)
    if len(content) < HEADER_LEN + 1:
        return FrameResult(None, f"frame of {len(content)} bytes is shorter than a record header")
    record, got = content[:-1], content[-1]
    want = checksum(record)
    if got != want:
        return FrameResult(
            None, f"checksum mismatch: frame says {got:02X}, bytes sum to {want:02X}"
        )
    r_len = struct.unpack_from("<h", record, 0)[0]
    if r_len != len(record):
        return FrameResult(None, f"r_len {r_len} does not match the {len(record)}-byte record")
    if len(record) > MAX_RECORD_LEN:
        return FrameResult(None, f"record of {len(record)} bytes exceeds {MAX_RECORD_LEN}")
    return FrameResult(record)


# ---- header -----------------------------------------------------------------------------------
_HDR = struct.Struct("<hBBHIBBHh")  # 16 bytes, then 8 x (i16 offset, u8 type)
_SR = struct.Struct("<hB")


@dataclass(frozen=True, slots=True)
class Header:
    r_len: int
    r_nbr: int
    dri_level: int
    plug_id: int
    r_time: int  # Unix seconds, device clock
    n_subnet: int
    maintype: int
    subrecords: tuple[tuple[int, int], ...]  # (offset into data area, type), up to the 0xFF end


def encode_header(
    *,
    data_len: int,
    maintype: int,
    subrecords: Sequence[tuple[int, int]],
    r_time: int = 0,
    dri_level: int = 0,
    r_nbr: int = 0,
    plug_id: int = 0,
) -> bytes:
    if len(subrecords) >= MAX_SUBRECORDS:
        raise ValueError(f"at most {MAX_SUBRECORDS - 1} subrecords fit with the end marker")
    hdr = bytearray(
        _HDR.pack(HEADER_LEN + data_len, r_nbr, dri_level, plug_id, r_time, 0, 0, 0, maintype)
    )
    descs = [*subrecords, (0, SR_END)]
    for off, typ in descs:
        hdr += _SR.pack(off, typ)
    hdr += bytes(HEADER_LEN - len(hdr))  # unused descriptors are zero
    return bytes(hdr)


def parse_header(record: bytes) -> tuple[Header | None, str]:
    if len(record) < HEADER_LEN:
        return None, "record shorter than its 40-byte header"
    r_len, r_nbr, dri_level, plug_id, r_time, n_subnet, _r1, _r2, maintype = _HDR.unpack_from(
        record, 0
    )
    subs: list[tuple[int, int]] = []
    for i in range(MAX_SUBRECORDS):
        off, typ = _SR.unpack_from(record, _HDR.size + 3 * i)
        if typ == SR_END:
            break
        subs.append((off, typ))
    return Header(r_len, r_nbr, dri_level, plug_id, r_time, n_subnet, maintype, tuple(subs)), ""


def subrecord_spans(header: Header, data_len: int) -> tuple[list[tuple[int, int, int]], str]:
    """(type, start, end) of each subrecord inside the data area, checked against its size.

    A subrecord runs from its offset to the next descriptor's offset (or the end of the data).
    """
    spans: list[tuple[int, int, int]] = []
    subs = header.subrecords
    for i, (off, typ) in enumerate(subs):
        end = subs[i + 1][0] if i + 1 < len(subs) else data_len
        if not 0 <= off <= end <= data_len:
            return [], f"subrecord {i} (type {typ}) spans {off}..{end} outside {data_len} bytes"
        spans.append((typ, off, end))
    return spans, ""


# ---- PHDB request -----------------------------------------------------------------------------
_REQ = struct.Struct("<BhIh")


@dataclass(frozen=True, slots=True)
class PhdbRequest:
    record_type: int  # 1 displayed, 2 10-s trend, 3 60-s trend
    interval_s: int  # >= 5 periodic, -1 single shot, 0 stop
    class_bf: int = REQ_BASIC


def encode_phdb_request(request: PhdbRequest, *, dri_level: int = 0) -> bytes:
    """The 49-byte request record (header + 9-byte request subrecord), unframed."""
    body = _REQ.pack(request.record_type, request.interval_s, request.class_bf, 0)
    hdr = encode_header(
        data_len=len(body),
        maintype=MT_PHDB,
        subrecords=[(0, SR_PHDB_REQUEST)],
        dri_level=dri_level,
    )
    return hdr + body


def parse_phdb_requests(record: bytes) -> tuple[list[PhdbRequest], str]:
    header, err = parse_header(record)
    if header is None:
        return [], err
    if header.maintype != MT_PHDB:
        return [], f"main type {header.maintype} is not a PHDB record"
    data = record[HEADER_LEN:]
    spans, err = subrecord_spans(header, len(data))
    if err:
        return [], err
    out: list[PhdbRequest] = []
    for typ, start, end in spans:
        if typ != SR_PHDB_REQUEST:
            continue
        if end - start < PHDB_REQUEST_LEN:
            return [], f"PHDB request subrecord of {end - start} bytes, need {PHDB_REQUEST_LEN}"
        rtype, ival, class_bf, _res = _REQ.unpack_from(data, start)
        out.append(PhdbRequest(rtype, ival, class_bf))
    return out, ""


# ---- PHDB data subrecords ---------------------------------------------------------------------
def encode_basic_class(groups: Mapping[str, Group]) -> bytes:
    """270-byte basic class data; groups not given (and the bytes between them) are zero."""
    data = bytearray(PHDB_CLASS_DATA_LEN)
    for name, group in groups.items():
        layout = BASIC_GROUPS[name]
        if len(group.values) != len(layout.fields):
            raise ValueError(f"group {name} needs {len(layout.fields)} values")
        struct.pack_into(
            f"<IH{len(layout.fields)}h",
            data,
            layout.offset,
            group.status,
            group.label,
            *group.values,
        )
    return bytes(data)


def decode_basic_class(data: bytes) -> dict[str, Group]:
    out: dict[str, Group] = {}
    for name, layout in BASIC_GROUPS.items():
        status, label, *values = struct.unpack_from(
            f"<IH{len(layout.fields)}h", data, layout.offset
        )
        out[name] = Group(status, label, tuple(values))
    return out


def encode_phdb_subrecord(
    time_s: int, class_data: bytes, *, phdb_class: int = CLASS_BASIC, marker: int = 0
) -> bytes:
    if len(class_data) != PHDB_CLASS_DATA_LEN:
        raise ValueError("class data must be 270 bytes")
    return (
        struct.pack("<I", time_s)
        + class_data
        + struct.pack("<BBH", marker, 0, (phdb_class & 0x0F) << 8)
    )


@dataclass(frozen=True, slots=True)
class PhdbSubrecord:
    sr_type: int
    time_s: int
    phdb_class: int
    data: bytes  # the 270 class bytes


def parse_phdb_subrecord(sr_type: int, raw: bytes) -> PhdbSubrecord | None:
    if len(raw) < PHDB_SUBRECORD_LEN:
        return None
    time_s = struct.unpack_from("<I", raw, 0)[0]
    cl = struct.unpack_from("<H", raw, 4 + PHDB_CLASS_DATA_LEN + 2)[0]
    return PhdbSubrecord(sr_type, time_s, (cl >> 8) & 0x0F, raw[4 : 4 + PHDB_CLASS_DATA_LEN])


def encode_aux_class(nibp_time: int) -> bytes:
    """Auxiliary info class data: ``nibp_time`` (Unix s of the latest NIBP, 0 = unknown) first;
    the remaining fields (cuff pressure, CO/PCWP times, display scales) are left zero."""
    data = bytearray(PHDB_CLASS_DATA_LEN)
    struct.pack_into("<I", data, 0, nibp_time)
    return bytes(data)


def aux_nibp_time(data: bytes) -> int:
    return int(struct.unpack_from("<I", data, 0)[0])


@dataclass
class DisplayedRecord:
    """What the emulator puts in one displayed-values record (encoder convenience)."""

    r_time: int
    groups: dict[str, Group] = field(default_factory=dict)
    nibp_time: int | None = None  # None: no auxiliary-info subrecord
    dri_level: int = DRI_LEVEL_2009
    r_nbr: int = 0

    def encode(self) -> bytes:
        subs = [(0, SR_DISPLAYED)]
        data = encode_phdb_subrecord(self.r_time, encode_basic_class(self.groups))
        if self.nibp_time is not None:
            subs.append((len(data), SR_AUX_INFO))
            data += encode_phdb_subrecord(
                self.r_time, encode_aux_class(self.nibp_time), phdb_class=CLASS_AUX
            )
        hdr = encode_header(
            data_len=len(data),
            maintype=MT_PHDB,
            subrecords=subs,
            r_time=self.r_time,
            dri_level=self.dri_level,
            r_nbr=self.r_nbr,
        )
        return hdr + data
