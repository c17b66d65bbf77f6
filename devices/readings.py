"""Typed, immutable readings and the canonical parameter table.

Every protocol turns its wire format into :class:`Reading` objects. Parameter names, UCUM units and
IEEE 11073 MDC reference ids are declared once here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Quality(enum.Flag):
    """Quality flags carried on every reading (bit values are stored in the database)."""

    NONE = 0
    INVALID = enum.auto()
    QUESTIONABLE = enum.auto()
    DEMO = enum.auto()
    TEST = enum.auto()
    CALIBRATION = enum.auto()
    MANUAL = enum.auto()

    def names(self) -> list[str]:
        """Lower-case names of the set flags, in declaration order."""
        return [m.name.lower() for m in Quality if m.name and m in self and m is not Quality.NONE]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Quality:
        q = cls.NONE
        for n in names:
            try:
                q |= cls[n.upper()]
            except KeyError as exc:
                raise ValueError(f"unknown quality flag {n!r}") from exc
        return q


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    name: str
    label: str
    unit: str  # UCUM
    mdc: str | None  # IEEE 11073-10101 reference id
    mdc_code: int | None  # partition << 16 | term code, as carried in HL7 OBX-3 (e.g. 150021)
    episodic: bool = False  # NIBP: one reading per cuff cycle


PARAMETERS: dict[str, ParameterInfo] = {
    p.name: p
    for p in (
        ParameterInfo(
            "nibp_sys", "NIBP systolic", "mm[Hg]", "MDC_PRESS_BLD_NONINV_SYS", 150021, True
        ),
        ParameterInfo(
            "nibp_dia", "NIBP diastolic", "mm[Hg]", "MDC_PRESS_BLD_NONINV_DIA", 150022, True
        ),
        ParameterInfo(
            "nibp_mean", "NIBP mean", "mm[Hg]", "MDC_PRESS_BLD_NONINV_MEAN", 150023, True
        ),
        ParameterInfo("hr", "Heart rate", "/min", "MDC_ECG_HEART_RATE", 147842),
        ParameterInfo("pr", "Pulse rate", "/min", "MDC_PULS_OXIM_PULS_RATE", 149530),
        ParameterInfo("spo2", "SpO2", "%", "MDC_PULS_OXIM_SAT_O2", 150456),
        ParameterInfo("rr", "Respiratory rate", "/min", "MDC_RESP_RATE", 151562),
        ParameterInfo("etco2", "EtCO2", "mm[Hg]", "MDC_AWAY_CO2_ET", 151708),
        ParameterInfo("temp", "Temperature", "Cel", "MDC_TEMP", 150344),
        ParameterInfo("pi", "Perfusion index", "%", "MDC_PULS_OXIM_PERF_REL", 150448),
        ParameterInfo("sphb", "SpHb", "g/dL", None, None),
        ParameterInfo("spmet", "SpMet", "%", None, None),
        ParameterInfo("pvi", "PVI", "%", None, None),
    )
}
VITAL_PARAMETERS = ("nibp_sys", "nibp_dia", "nibp_mean", "hr", "pr", "spo2", "rr")
NIBP_PARAMETERS = ("nibp_sys", "nibp_dia", "nibp_mean")
MDC_TO_PARAMETER: dict[str, str] = {p.mdc: p.name for p in PARAMETERS.values() if p.mdc}
MDC_CODE_TO_PARAMETER: dict[int, str] = {
    p.mdc_code: p.name for p in PARAMETERS.values() if p.mdc_code is not None
}


#: The measurement origins a reading may name (``Reading.origin``). Pulse rate: ``ecg`` (heart
#: rate from the ECG), ``pleth`` (pulse oximeter), ``cuff`` (the NIBP cuff), ``invasive``
#: (arterial line), ``unspecified``; respiration rate: ``impedance`` (transthoracic, ECG leads),
#: ``co2`` (capnography), ``airway`` (airway flow), ``acoustic`` (Masimo RRa), ``pleth``;
#: temperature: the body site (``oral``, ``axillary``, ``skin``, ``tympanic``, ``rectal``,
#: ``core``, ``ear``, ``body``); NIBP: ``cuff``.
ORIGINS: frozenset[str] = frozenset(
    {
        *("ecg", "pleth", "cuff", "invasive", "unspecified", "impedance", "co2", "airway"),
        *("acoustic", "oral", "axillary", "skin", "tympanic", "rectal", "core", "ear", "body"),
        *("gi", "manual"),
    }
)
#: origin of a canonical parameter when the device does not tell (its MDC code says it)
DEFAULT_ORIGIN: dict[str, str] = {
    "nibp_sys": "cuff",
    "nibp_dia": "cuff",
    "nibp_mean": "cuff",
    "nibp_pr": "cuff",
    "hr": "ecg",
    "pr": "pleth",
    "pr_invasive": "invasive",
    "spo2": "pleth",
    "pi": "pleth",
    "etco2": "co2",
    "etco2_pct": "co2",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value as the device reported it.

    ``device_time`` is the device's own clock when the protocol carries one (else ``None``);
    ``host_time`` is when the host received the bytes, always timezone-aware UTC.
    """

    parameter: str
    value: float
    unit: str
    host_time: datetime
    mdc: str | None = None
    device_time: datetime | None = None
    quality: Quality = Quality.NONE
    source: str = ""
    #: what the value was measured by (see :data:`ORIGINS`): ``ecg``, ``pleth``, ``cuff``,
    #: ``impedance``, a temperature site …; "" when the device does not say
    origin: str = ""
    #: the device's channel of this value when it has several of the same kind (HL7 OBX-4
    #: containment id ``1.2.1.1``, Datex ``T2``); "" for the only one
    channel: str = ""

    def __post_init__(self) -> None:
        if self.host_time.tzinfo is None:
            raise ValueError("host_time must be timezone-aware")
        if self.device_time is not None and self.device_time.tzinfo is None:
            raise ValueError("device_time must be timezone-aware")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.parameter}: value must be finite, got {self.value!r}")

    @property
    def valid(self) -> bool:
        return not (self.quality & Quality.INVALID)

    def to_json_dict(self) -> dict[str, Any]:
        """The public JSON shape printed by ``ketamon decode`` and ``ketamon record``."""
        return {
            "parameter": self.parameter,
            "value": self.value,
            "unit": self.unit,
            "mdc": self.mdc,
            "device_time": self.device_time.isoformat() if self.device_time else None,
            "host_time": self.host_time.isoformat(),
            "flags": self.quality.names(),
            "source": self.source,
            "origin": self.origin,
            "channel": self.channel,
        }


def make_reading(
    parameter: str,
    value: float,
    host_time: datetime,
    *,
    device_time: datetime | None = None,
    quality: Quality = Quality.NONE,
    source: str = "",
    unit: str | None = None,
    origin: str | None = None,
    channel: str = "",
    mdc: str | None = None,
) -> Reading:
    """Build a reading for a canonical (or free-form) parameter, filling unit and MDC id."""
    info = PARAMETERS.get(parameter)
    return Reading(
        parameter=parameter,
        value=float(value),
        unit=unit if unit is not None else (info.unit if info else ""),
        mdc=mdc if mdc is not None else (info.mdc if info else None),
        host_time=host_time,
        device_time=device_time,
        quality=quality,
        source=source,
        origin=origin if origin is not None else DEFAULT_ORIGIN.get(parameter, ""),
        channel=channel,
    )


@dataclass(frozen=True, slots=True)
class Waveform:
    """A block of waveform samples (e.g. pleth at 125 Hz); kept apart from numerics."""

    parameter: str
    start: datetime
    rate_hz: float
    samples: tuple[float, ...] = field(default=())
