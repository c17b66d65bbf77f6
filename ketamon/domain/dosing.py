"""Routes of administration and dose accountability (a Schedule III drug).

Every administration records product, concentration, lot, expiry, the quantity drawn, given and
wasted. Waste is witnessed by a second user (the core checks the witness's password). The
per-day report totals administrations and waste per product and lot. Pure: no clock, no
database.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

#: IM injection sites
IM_SITES: dict[str, str] = {
    "deltoid_left": "Deltoid, left",
    "deltoid_right": "Deltoid, right",
    "vastus_lateralis_left": "Vastus lateralis, left",
    "vastus_lateralis_right": "Vastus lateralis, right",
    "gluteal_left": "Ventrogluteal, left",
    "gluteal_right": "Ventrogluteal, right",
}
#: oral and sublingual forms -> (route, label)
ORAL_FORMS: dict[str, tuple[str, str]] = {
    "sublingual_troche": ("sublingual", "Sublingual troche / lozenge"),
    "sublingual_tablet": ("sublingual", "Sublingual tablet"),
    "oral_solution": ("oral", "Oral solution"),
    "oral_capsule": ("oral", "Oral capsule / tablet"),
}
#: the product name an esketamine device's dose and waste are reported under
ESKETAMINE_PRODUCT = "Esketamine nasal spray (28 mg device)"
ESKETAMINE_DEVICE_MG = 28.0
IM_MAX_MG_PER_KG = 2.0
ORAL_MAX_MG = 1000.0
TEXT_MAX = 64


class Route(enum.StrEnum):
    NASAL = "nasal"  # esketamine devices
    IV = "iv"
    IM = "im"
    ORAL = "oral"
    SUBLINGUAL = "sublingual"


@dataclass(frozen=True, slots=True)
class Supply:
    """What was drawn from: the product, its concentration (mg/mL; per device or tablet: mg per
    unit), lot and expiry (ISO date)."""

    product: str
    concentration: float
    lot: str
    expiry: str


def supply_problems(s: Supply, on: date) -> list[str]:
    p: list[str] = []
    if not s.product.strip():
        p.append("Enter the product")
    elif len(s.product) > TEXT_MAX:
        p.append(f"The product is longer than {TEXT_MAX} characters")
    if not isinstance(s.concentration, int | float) or not (
        math.isfinite(s.concentration) and 0 < s.concentration <= 1000
    ):
        p.append(f"The concentration must be above 0 and at most 1000, got {s.concentration!r}")
    if not s.lot.strip():
        p.append("Enter the lot number")
    elif len(s.lot) > TEXT_MAX:
        p.append(f"The lot number is longer than {TEXT_MAX} characters")
    try:
        expiry = date.fromisoformat(s.expiry)
    except (TypeError, ValueError):
        p.append(f"Enter the expiry date as YYYY-MM-DD, got {s.expiry!r}")
    else:
        if expiry < on:
            p.append(f"Lot {s.lot} expired on {expiry.isoformat()}: do not give it")
    return p


def im_dose_mg(mg_per_kg: float, weight_kg: float) -> float:
    if not 0 < weight_kg < 400:
        raise ValueError(f"weight must be between 0 and 400 kg, got {weight_kg:g}")
    if not 0 < mg_per_kg <= IM_MAX_MG_PER_KG:
        raise ValueError(
            f"IM dose must be above 0 and at most {IM_MAX_MG_PER_KG:g} mg/kg, got {mg_per_kg:g}"
        )
    return round(mg_per_kg * weight_kg, 1)


def volume_ml(mg: float, concentration_mg_per_ml: float) -> float:
    return round(mg / concentration_mg_per_ml, 2)


def quantity_problems(drawn_mg: float, given_mg: float) -> list[str]:
    """Drawn and given (mg): finite, positive, given no more than drawn."""
    p: list[str] = []
    for name, v in (("drawn", drawn_mg), ("given", given_mg)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            p.append(f"The quantity {name} must be a positive number of mg, got {v!r}")
    if not p and given_mg > drawn_mg + 1e-9:
        p.append(f"Given ({given_mg:g} mg) cannot be more than drawn ({drawn_mg:g} mg)")
    return p


# ---- the per-day report -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DoseLine:
    """One administration or one waste, as the report counts it."""

    day: date
    session_id: int
    product: str
    lot: str
    route: str
    given_mg: float = 0.0
    wasted_mg: float = 0.0
    devices: int = 0  # esketamine devices used
    witnessed_by: str = ""


@dataclass(frozen=True, slots=True)
class ReportRow:
    product: str
    lot: str
    administrations: int
    sessions: int
    devices: int
    given_mg: float
    wasted_mg: float

    @property
    def accounted_mg(self) -> float:
        return round(self.given_mg + self.wasted_mg, 3)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "product": self.product,
            "lot": self.lot,
            "administrations": self.administrations,
            "sessions": self.sessions,
            "devices": self.devices,
            "given_mg": self.given_mg,
            "wasted_mg": self.wasted_mg,
            "accounted_mg": self.accounted_mg,
        }


@dataclass
class _Acc:
    administrations: int = 0
    sessions: set[int] = field(default_factory=set)
    devices: int = 0
    given: float = 0.0
    wasted: float = 0.0


def dose_report(lines: Iterable[DoseLine], day: date) -> list[ReportRow]:
    """Totals per product and lot for ``day``, sorted by product then lot."""
    acc: dict[tuple[str, str], _Acc] = {}
    for ln in lines:
        if ln.day != day:
            continue
        a = acc.setdefault((ln.product, ln.lot), _Acc())
        if ln.given_mg > 0:
            a.administrations += 1
        a.sessions.add(ln.session_id)
        a.devices += ln.devices
        a.given += ln.given_mg
        a.wasted += ln.wasted_mg
    return [
        ReportRow(
            product=product,
            lot=lot,
            administrations=a.administrations,
            sessions=len(a.sessions),
            devices=a.devices,
            given_mg=round(a.given, 3),
            wasted_mg=round(a.wasted, 3),
        )
        for (product, lot), a in sorted(acc.items())
    ]
