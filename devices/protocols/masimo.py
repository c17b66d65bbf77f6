"""Masimo Radical-7 / Radical-5 / Rad-8 serial output, mode "ASCII 1" (devices.md §2.3).

The oximeter sends one line about every second without being asked; the host sends nothing:

    MM/dd/yy HH:mm:ss KEY=VALUE KEY=VALUE ... CR LF

Field sets and widths differ by model and firmware, so a line is parsed as whitespace-separated
``KEY=VALUE`` tokens rather than by a fixed pattern. Missing values are dashes of the field
width (``---``, ``--.-``, ``+--``), optionally followed by ``%``; they give no reading.
``EXC`` carries hexadecimal exception bits that become :class:`Quality` flags on every reading
of the line. There is no checksum, so a line is only accepted when it is well formed as a whole:
a valid timestamp, every token ``KEY=VALUE`` with a value of the right shape, SPO2 and BPM
present, and an exception field last. A line whose keys are a known model's keys cut short
(or whose final field has the wrong width) is a truncated line and is rejected.

Every known field has a fixed width (the documented sample lines: devices.md §2.3, and the MD PnP
``poxrad_discrete.h`` Radical-5/-7 examples): SPO2 and BPM three digits, PI ``dd.dd``, SPMET
``dd.d`` … A value of another width, or an unknown key one character away from a known one, is a
damaged line (a flipped bit) and is rejected: with no checksum, the layout is the only check.

Bytes before the first printable character of a line (the NULs a Rad-7 has been reported to send
before its first line, stray control bytes between lines) are skipped and counted in
:attr:`MasimoProtocol.stray_bytes`; a control byte *inside* a line rejects the line.

Timestamps are the oximeter's wall clock with no zone. They are read in ``device_tz`` (default:
the host's local zone, which is how the device clock is normally set) and stored as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from devices.protocols.base import DeviceProtocol, SerialSettings
from devices.readings import Quality, Reading, make_reading

MAX_LINE = 512  # the longest known line is ~190 characters
#: bytes skipped around a line: C0 controls, DEL and blanks (CR and LF end lines)
_STRAY = bytes(range(0x20)) + b"\x7f "

# ---- status: the Masimo table ------------------------------------------------------------------
# EXC exception bits. Sources: Rad-8 operator's manual as quoted by nmenon/masimo-datacapture
# (0x001-0x800) and MD PnP poxrad_discrete.h (2012, Radical-5/-7; the bits above 0x800).
EXC_NO_SENSOR = 0x001
EXC_DEFECTIVE_SENSOR = 0x002
EXC_LOW_PERFUSION = 0x004
EXC_PULSE_SEARCH = 0x008
EXC_INTERFERENCE = 0x010
EXC_SENSOR_OFF = 0x020
EXC_AMBIENT_LIGHT = 0x040
EXC_UNRECOGNISED_SENSOR = 0x080
EXC_LOW_SIGNAL_IQ = 0x400
EXC_SET_MODE = 0x800
EXC_INCOMPATIBLE_SENSOR = 0x100
EXC_NO_CABLE = 0x1000
EXC_CABLE_LIFE_EXPIRED = 0x2000
EXC_INCOMPATIBLE_CABLE = 0x4000
EXC_UNRECOGNISED_CABLE = 0x8000
EXC_DEFECTIVE_CABLE = 0x10000
EXC_SENSOR_CALIBRATING = 0x20000
EXC_SENSOR_LIFE_EXPIRED = 0x40000
EXC_EMITTER_TEMP = 0x80000
EXC_SENSOR_CURRENT_LIMIT = 0x100000

EXCEPTION_NAMES: dict[int, str] = {
    EXC_NO_SENSOR: "no sensor",
    EXC_DEFECTIVE_SENSOR: "defective sensor",
    EXC_LOW_PERFUSION: "low perfusion",
    EXC_PULSE_SEARCH: "pulse search",
    EXC_INTERFERENCE: "interference",
    EXC_SENSOR_OFF: "sensor off",
    EXC_AMBIENT_LIGHT: "ambient light",
    EXC_UNRECOGNISED_SENSOR: "unrecognised sensor",
    EXC_LOW_SIGNAL_IQ: "low signal IQ",
    EXC_SET_MODE: "SET mode",
    EXC_INCOMPATIBLE_SENSOR: "incompatible sensor",
    EXC_NO_CABLE: "no cable connected",
    EXC_CABLE_LIFE_EXPIRED: "cable life expired",
    EXC_INCOMPATIBLE_CABLE: "incompatible cable",
    EXC_UNRECOGNISED_CABLE: "unrecognised cable",
    EXC_DEFECTIVE_CABLE: "defective cable",
    EXC_SENSOR_CALIBRATING: "sensor calibrating",
    EXC_SENSOR_LIFE_EXPIRED: "sensor life expired",
    EXC_EMITTER_TEMP: "emitter temperature out of range",
    EXC_SENSOR_CURRENT_LIMIT: "sensor current limit exceeded",
    0x200000: "SpCO low confidence",
    0x400000: "SpMet low confidence",
}
#: a value shown despite these is not a measurement of the patient
_EXC_INVALID = (
    EXC_NO_SENSOR
    | EXC_DEFECTIVE_SENSOR
    | EXC_SENSOR_OFF
    | EXC_UNRECOGNISED_SENSOR
    | EXC_INCOMPATIBLE_SENSOR
    | EXC_NO_CABLE
    | EXC_INCOMPATIBLE_CABLE
    | EXC_UNRECOGNISED_CABLE
    | EXC_DEFECTIVE_CABLE
)
#: the oximeter still measures, but says the signal (or the hardware) is doubtful
_EXC_QUESTIONABLE = (
    EXC_LOW_PERFUSION
    | EXC_PULSE_SEARCH
    | EXC_INTERFERENCE
    | EXC_AMBIENT_LIGHT
    | EXC_LOW_SIGNAL_IQ
    | EXC_CABLE_LIFE_EXPIRED
    | EXC_SENSOR_LIFE_EXPIRED
    | EXC_EMITTER_TEMP
    | EXC_SENSOR_CURRENT_LIMIT
)
#: the sensor is calibrating: what it shows is not yet a measurement of the patient
_EXC_CALIBRATION = EXC_SENSOR_CALIBRATING
# SpCO/SpMet low confidence concern only those two values, which ketamon does not chart: no flag.
# "No value" is a field of dashes (---, --.-, +--): it gives no reading (devices.md §2.3).
# SET mode (0x800) describes the signal-processing mode, not signal quality: no flag.


def describe_exceptions(bits: int) -> list[str]:
    return [name for bit, name in EXCEPTION_NAMES.items() if bits & bit] + (
        [f"unknown bits {bits & ~sum(EXCEPTION_NAMES):#x}"] if bits & ~sum(EXCEPTION_NAMES) else []
    )


def exception_quality(bits: int) -> Quality:
    q = Quality.NONE
    if bits & _EXC_INVALID:
        q |= Quality.INVALID
    if bits & _EXC_QUESTIONABLE:
        q |= Quality.QUESTIONABLE
    if bits & _EXC_CALIBRATION:
        q |= Quality.CALIBRATION
    return q


@dataclass(frozen=True, slots=True)
class Variant:
    """A known model/firmware line layout (devices.md §2.3 sample lines)."""

    name: str
    keys: tuple[str, ...]
    widths: dict[str, int]  # exact hex widths of the status fields


def _variant(name: str, layout: str, widths: dict[str, int]) -> Variant:
    return Variant(name, tuple(layout.split()), widths)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        # Radical-7 colour, newer firmware
        _variant(
            "radical7",
            "SN SPO2 BPM PI SPCO SPMET SPHB SPOC RESVD DESAT PIDELTA PVI ALARM EXC EXC1",
            {"ALARM": 6, "EXC": 7, "EXC1": 8},
        ),
        # Radical-7, the layout quoted from its service manual
        _variant(
            "radical7_legacy",
            "SN SPO2 BPM PI SPCO SPMET DESAT PIDELTA PVI ALARM EXC",
            {"ALARM": 4, "EXC": 6},
        ),
        _variant("rad8", "SN SPO2 BPM DESAT PIDELTA ALARM EXC", {"ALARM": 4, "EXC": 6}),
        # Radical-5 (MD PnP poxrad_discrete.h example line): no SN, 2-digit ALARM, 3-digit EXC.
        # Rad-5: no public sample found; its output is taken to be the Radical-5 layout (the
        # same SET board generation) - a Rad-5 line of another layout still parses when well
        # formed, as an unknown variant.
        _variant("radical5", "SPO2 BPM PI ALARM EXC", {"ALARM": 2, "EXC": 3}),
    )
}

# Value shapes. Numbers may carry a trailing % (SPO2=098%, PI=--.--%), missing ones are dashes.
_MISSING = re.compile(r"[+]?-+(?:\.-+)?%?")
_NUMBER = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)%?")
_HEX = re.compile(r"[0-9A-Fa-f]{2,8}")
_SERIAL = re.compile(r"[0-9A-Za-z]+|-+")
_SIGNED = re.compile(r"[+-]?\d{1,3}%?")
_KEY = re.compile(r"[A-Z][A-Z0-9]{0,15}")
_GENERIC = re.compile(r"[!-~]{1,32}")  # printable ASCII, no spaces
_DATE = re.compile(r"(\d\d)/(\d\d)/(\d\d)")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)")

#: key -> (parameter, UCUM unit); values as displayed (SpO2 %, BPM /min, PI %, SpHb g/dL …)
MEASURES: dict[str, tuple[str, str]] = {
    "SPO2": ("spo2", "%"),
    "BPM": ("pr", "/min"),
    "PI": ("pi", "%"),
    "SPCO": ("spco", "%"),
    "SPMET": ("spmet", "%"),
    "SPHB": ("sphb", "g/dL"),
    "SPOC": ("spoc", "mL/dL"),
    "PVI": ("pvi", "%"),
}
_STATUS_KEYS = ("ALARM", "EXC")
#: fixed value layout per field (number or dashes of the same width, optional %), from the
#: documented lines (devices.md §2.3; poxrad_discrete.h). Anything else is a damaged field.
FIELD_SHAPES: dict[str, re.Pattern[str]] = {
    k: re.compile(v)
    for k, v in {
        "SPO2": r"(?:\d{3}|-{3})%?",
        "BPM": r"(?:\d{3}|-{3})%?",
        "PI": r"(?:\d{2}\.\d{2}|--\.--)%?",
        "SPCO": r"(?:\d{2}(?:\.\d)?|--(?:\.-)?)%?",
        "SPMET": r"(?:\d{2}\.\d|--\.-)%?",
        "SPHB": r"\d{2}\.\d|--\.-",
        "SPOC": r"\d{2}|--",
        "PVI": r"\d{3}|---",
        "DESAT": r"\d{2}|--",
        "PIDELTA": r"[+-]\d{2}|\+--",
        "RESVD": r"\d{3}|---",
    }.items()
}
_KNOWN_KEYS = frozenset({*FIELD_SHAPES, "SN", "ALARM", "EXC", "EXC1"})
#: what the oximeter can display (Masimo Radical-7 / Rad-8 specifications: SpO2 0-100 %, pulse
#: rate 25-240 /min, PI 0.02-20 %, PVI 0-100 %): a value outside is a damaged digit, since the
#: device never sends it. (Physiological plausibility is checked later, not here.)
DISPLAY_RANGES: dict[str, tuple[float, float]] = {
    "SPO2": (0.0, 100.0),
    "BPM": (25.0, 240.0),
    "PI": (0.02, 20.0),
    "PVI": (0.0, 100.0),
    "SPMET": (0.0, 99.9),
    "SPCO": (0.0, 99.9),
}


@dataclass(frozen=True, slots=True)
class ParsedLine:
    device_time: datetime
    values: dict[str, float]  # parameter -> value, missing ones left out
    exceptions: int
    alarm: int
    serial: str | None
    variant: str | None  # name of the known layout, None for an unknown but well-formed one


def _one_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _is_exc_key(key: str) -> bool:
    return key == "EXC" or (key.startswith("EXC") and key[3:].isdigit())


def parse_line(text: str, device_tz: tzinfo | None = None) -> tuple[ParsedLine | None, str]:
    """One line without its CR/LF -> parsed fields, or (None, why it was rejected)."""
    tokens = text.split()
    if len(tokens) < 3:
        return None, f"line too short ({len(tokens)} fields)"
    d, t = _DATE.fullmatch(tokens[0]), _TIME.fullmatch(tokens[1])
    if d is None or t is None:
        return None, "line does not start with MM/dd/yy HH:mm:ss"
    month, day, yy = (int(x) for x in d.groups())
    hh, mm, ss = (int(x) for x in t.groups())
    try:
        naive = datetime(2000 + yy, month, day, hh, mm, ss)
        # Without a zone: astimezone() reads a naive time as host local time (DST included).
        local = naive.replace(tzinfo=device_tz) if device_tz is not None else naive
        device_time = local.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None, f"invalid device timestamp {tokens[0]} {tokens[1]}"

    fields: dict[str, str] = {}
    keys: list[str] = []
    for tok in tokens[2:]:
        key, eq, value = tok.partition("=")
        if not eq or not _KEY.fullmatch(key) or not value:
            return None, f"malformed field {tok[:20]!r}"
        if key in fields:
            return None, f"field {key} appears twice"
        if key not in _KNOWN_KEYS and any(_one_apart(key, k) for k in _KNOWN_KEYS):
            return None, f"unknown field {key} is one character off a known one (damaged)"
        shape = FIELD_SHAPES.get(key)
        if shape is not None and not shape.fullmatch(value):
            return None, f"{key}={value[:20]!r} does not have the field's fixed layout"
        fields[key] = value
        keys.append(key)
    if "SPO2" not in fields or "BPM" not in fields:
        return None, "line has no SPO2 or BPM field"
    if not _is_exc_key(keys[-1]):
        return None, f"line ends with {keys[-1]}, not with an exception field (truncated?)"

    variant = next((v for v in VARIANTS.values() if tuple(keys) == v.keys), None)
    if variant is None:
        for v in VARIANTS.values():
            if len(keys) < len(v.keys) and tuple(keys) == v.keys[: len(keys)]:
                return None, f"{v.name} line cut short after {keys[-1]}"

    values: dict[str, float] = {}
    exceptions = alarm = 0
    for key, value in fields.items():
        if key == "SN":
            if not _SERIAL.fullmatch(value):
                return None, f"malformed serial number {value[:20]!r}"
        elif key in _STATUS_KEYS or _is_exc_key(key):
            if not _HEX.fullmatch(value):
                return None, f"{key}={value[:20]!r} is not a hex status field"
            want = variant.widths.get(key) if variant is not None else None
            if want is not None and len(value) != want:
                return None, f"{key} has {len(value)} digits where this model sends {want}"
            bits = int(value, 16)
            if key == "EXC":
                exceptions = bits
            elif key == "ALARM":
                alarm = bits
        elif key in MEASURES:
            if _MISSING.fullmatch(value):
                continue
            m = _NUMBER.fullmatch(value)
            if m is None:
                return None, f"{key}={value[:20]!r} is neither a number nor dashes"
            number = float(m.group(1))
            lo, hi = DISPLAY_RANGES.get(key, (0.0, float("inf")))
            if not lo <= number <= hi:
                return None, f"{key}={value} is outside what the oximeter displays ({lo:g}-{hi:g})"
            values[MEASURES[key][0]] = number
        elif key in ("DESAT", "PIDELTA", "RESVD"):
            if not (_MISSING.fullmatch(value) or _SIGNED.fullmatch(value)):
                return None, f"{key}={value[:20]!r} is neither a number nor dashes"
        elif not _GENERIC.fullmatch(value):
            return None, f"{key} has a malformed value"
    return (
        ParsedLine(
            device_time=device_time,
            values=values,
            exceptions=exceptions,
            alarm=alarm,
            serial=fields["SN"] if "SN" in fields and not fields["SN"].startswith("-") else None,
            variant=variant.name if variant else None,
        ),
        "",
    )


class MasimoProtocol(DeviceProtocol):
    """Listen-only line parser for Masimo "ASCII 1" output."""

    name = "masimo"
    default_serial = SerialSettings(baudrate=9600)  # 8N1, no handshake
    # One line per second. OpenICE allows 1.1 s; 3 s tolerates USB-serial latency and a
    # line lost to noise without flapping the link state.
    quiet_time_s = 3.0
    # The newest Radical-7 line is ~170 bytes with CR LF, once a second.
    nominal_bytes_per_s = 170.0

    def __init__(self, source: str = "", *, device_tz: tzinfo | None = None) -> None:
        super().__init__(source)
        self.device_tz = device_tz
        self._buf = bytearray()
        self._overlong = False
        #: the last line's exception and alarm bits (exceptions also become quality flags)
        self.exceptions = 0
        self.alarm = 0
        self.serial_number: str | None = None
        self.variant: str | None = None
        #: control bytes (NUL …) skipped before/after lines (issue 16: Rad-7 leading NULs)
        self.stray_bytes = 0

    def reset(self) -> None:
        super().reset()
        self._buf.clear()
        self._overlong = False

    def summary(self) -> list[str]:
        if not self.stray_bytes:
            return []
        return [f"{self.stray_bytes} stray control byte(s) (NUL …) between lines skipped"]

    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        self.stats.bytes_in += len(data)
        out: list[Reading] = []
        start = 0
        n = len(data)
        while start < n:
            # CR and LF both end a line; the empty line between CR and LF is skipped.
            cr, lf = data.find(b"\r", start), data.find(b"\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                self._append(data[start:])
                break
            end = min(ends)
            self._append(data[start:end])
            out.extend(self._line(now))
            start = end + 1
        self.stats.readings += len(out)
        return out

    def _append(self, chunk: bytes) -> None:
        if self._overlong or not chunk:
            return
        self._buf += chunk
        if len(self._buf) > MAX_LINE:
            self._overlong = True  # drop the rest of this "line" up to the next CR/LF
            self._buf.clear()

    def _line(self, now: datetime) -> list[Reading]:
        raw = bytes(self._buf)
        overlong = self._overlong
        self._buf.clear()
        self._overlong = False
        if overlong:
            self.stats.bad_frame(f"line longer than {MAX_LINE} bytes")
            return []
        body = raw.strip(_STRAY)
        if len(body) != len(raw):
            head = raw[: raw.find(body)] if body else raw
            tail = raw[len(head) + len(body) :]
            self.stray_bytes += sum(1 for b in head + tail if b != 0x20)
        raw = body
        if not raw:
            return []
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self.stats.bad_frame("line contains non-ASCII bytes")
            return []
        if not text.isprintable():
            self.stats.bad_frame("line contains control characters")
            return []
        try:
            parsed, why = parse_line(text, self.device_tz)
        except Exception as exc:  # pragma: no cover - defensive: feed() must never raise
            parsed, why = None, f"line could not be parsed: {exc!r}"
        if parsed is None:
            self.stats.bad_frame(why)
            return []
        self.stats.frames_ok += 1
        self._streaming = True
        self.exceptions = parsed.exceptions
        self.alarm = parsed.alarm
        self.serial_number = parsed.serial
        self.variant = parsed.variant
        quality = exception_quality(parsed.exceptions)
        return [
            make_reading(
                param,
                value,
                now,
                device_time=parsed.device_time,
                quality=quality,
                source=self.source,
                unit=MEASURES_BY_PARAM[param],
            )
            for param, value in parsed.values.items()
        ]


MEASURES_BY_PARAM: dict[str, str] = {param: unit for param, unit in MEASURES.values()}
