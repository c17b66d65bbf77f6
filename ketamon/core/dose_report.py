"""The per-day administration and waste report (``ketamon doses report``): every dose and
waste in the session records, per product and lot (a Schedule III drug's accountability)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, tzinfo

from ketamon.domain.dosing import ESKETAMINE_DEVICE_MG, ESKETAMINE_PRODUCT, DoseLine
from ketamon.domain.record import EntryKind, SessionEntry

IV_PRODUCT_UNRECORDED = "Ketamine IV (product not recorded)"
LOT_UNRECORDED = "(not recorded)"


def _day(at: datetime, tz: tzinfo | None) -> date:
    return at.astimezone(tz).date()


def dose_lines(entries: Iterable[SessionEntry], tz: tzinfo | None = None) -> list[DoseLine]:
    """Each administration and waste in ``entries`` (any sessions, any order) as report lines,
    dated in ``tz`` (None: the machine's local time). An infusion counts what was given by its
    stop; a partly used esketamine device's disposal moves its mg from given to wasted."""
    out: list[DoseLine] = []
    infusions: dict[int, SessionEntry] = {}
    for e in sorted(entries, key=lambda x: x.id):
        d = e.data
        day = _day(e.at, tz)
        if e.kind is EntryKind.DEVICE:
            out.append(
                DoseLine(
                    day,
                    e.session_id,
                    ESKETAMINE_PRODUCT,
                    str(d.get("lot") or LOT_UNRECORDED),
                    "nasal",
                    given_mg=float(d.get("mg", ESKETAMINE_DEVICE_MG)),
                    devices=1,
                )
            )
        elif e.kind is EntryKind.INFUSION_STARTED:
            infusions[e.session_id] = e
        elif e.kind is EntryKind.INFUSION_STOPPED and e.session_id in infusions:
            start = infusions.pop(e.session_id)
            sd = start.data
            out.append(
                DoseLine(
                    _day(start.at, tz),
                    e.session_id,
                    str(sd.get("product") or IV_PRODUCT_UNRECORDED),
                    str(sd.get("lot") or LOT_UNRECORDED),
                    "iv",
                    given_mg=float(d["given_mg"]),
                )
            )
        elif e.kind is EntryKind.ADMINISTERED:
            out.append(
                DoseLine(
                    day,
                    e.session_id,
                    str(d["product"]),
                    str(d["lot"]),
                    str(d["route"]),
                    given_mg=float(d["given_mg"]),
                )
            )
        elif e.kind is EntryKind.WASTE:
            mg = float(d["mg"])
            device = d.get("device_number") is not None
            out.append(
                DoseLine(
                    day,
                    e.session_id,
                    str(d["product"]),
                    str(d["lot"]),
                    "nasal" if device else "",
                    # a partly used device was counted as 28 mg given: what was left is waste
                    given_mg=-mg if device else 0.0,
                    wasted_mg=mg,
                    witnessed_by=e.authorised_by,
                )
            )
    return out
