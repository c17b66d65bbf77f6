"""One session for export: its record, its fold and its readings, as every format reads them.

Nothing here re-derives clinical state: the state is the core's fold of the entries
(:func:`ketamon.domain.record.fold`), the timeline is the core's ``record_lines``, the figures
are the core's ``session_figures``. This module only arranges them: the tidy rows of the CSV
files and the JSON document (schema ``ketamon-session-export`` version 1, in
``resources/export/session-export-1.schema.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from devices.readings import PARAMETERS, Quality, Reading
from ketamon import __version__
from ketamon.core.read_models import KIND_LABELS, SessionFigures, record_lines, session_figures
from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, SessionEntry, SessionState, Signature, fold
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.side_effects import SIDE_EFFECTS_BY_KEY
from ketamon.exports.files import ExportError

SCHEMA_ID = "ketamon-session-export"
SCHEMA_VERSION = 1
SCHEMA_FILE = "export/session-export-1.schema.json"

#: scales as observations in the tidy file: kind → (parameter, unit)
SCALE_PARAMETERS = {
    EntryKind.MOAAS: "moaas",
    EntryKind.RASS: "rass",
    EntryKind.CADSS: "cadss_total",
}


def iso(at: datetime | None) -> str | None:
    """UTC ISO-8601 with its offset (``2026-11-30T09:00:00+00:00``)."""
    if at is None:
        return None
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat()


@dataclass(frozen=True, slots=True)
class SessionExport:
    """What every export is made from: the record, its fold, and the stored readings."""

    entries: tuple[SessionEntry, ...]
    state: SessionState
    readings: tuple[Reading, ...]
    generated_at: datetime
    site_name: str = ""
    exported_by: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        entries: Iterable[SessionEntry],
        readings: Iterable[Reading],
        *,
        generated_at: datetime,
        site_name: str = "",
        exported_by: str = "",
    ) -> SessionExport:
        es = tuple(entries)
        state = fold(es)
        if state is None:
            raise ExportError("the session has no record")
        return cls(es, state, tuple(readings), generated_at, site_name, exported_by)

    @property
    def session_id(self) -> int:
        return self.state.session_id

    @property
    def clock(self) -> SessionClock:
        return SessionClock(self.state.started, self.state.first_dose)

    def minutes(self, at: datetime) -> float | None:
        """Minutes since the first dose (negative before it); None when no dose was given."""
        if self.state.first_dose is None:
            return None
        return round((at - self.state.first_dose).total_seconds() / 60.0, 4)

    @property
    def status(self) -> str:
        s = self.state
        if s.signed:
            return "addendum" if s.addenda else "signed"
        return "awaiting_signature" if s.ended else "open"

    @property
    def record_sha256(self) -> str:
        return canonical_sha256(self.entries)

    def figures(self) -> SessionFigures:
        return session_figures(
            self.state, [(r.parameter, r.value, r.host_time) for r in self.readings if r.valid]
        )

    def signatures(self) -> list[tuple[str, Signature, str]]:
        """(kind, signature, addendum text) in order: the signature, then each addendum."""
        out: list[tuple[str, Signature, str]] = []
        if self.state.signature is not None:
            out.append(("signature", self.state.signature, ""))
        out += [("addendum", a.signature, a.text) for a in self.state.addenda]
        return out


# ---- tidy rows (CSV) -------------------------------------------------------------------------

OBSERVATION_COLUMNS = (
    "session_id",
    "time_utc",
    "minutes_since_first_dose",
    "parameter",
    "value",
    "unit",
    "mdc_code",
    "mdc_ref",
    "source",
    "device",
    "quality",
    "entry_id",
)
DOSE_COLUMNS = (
    "session_id",
    "time_utc",
    "minutes_since_first_dose",
    "kind",
    "drug",
    "route",
    "dose_mg",
    "lot",
    "device_number",
    "end_utc",
    "rate_mg_per_min",
    "recorded_by",
    "entry_id",
)
ALARM_COLUMNS = (
    "session_id",
    "time_utc",
    "minutes_since_first_dose",
    "key",
    "action",
    "priority",
    "family",
    "technical",
    "message",
    "by",
    "entry_id",
)


def _quality(q: Quality) -> str:
    return ";".join(q.names())


def _downsampled(readings: Sequence[Reading], every_s: float | None) -> list[Reading]:
    """At most one monitor reading per parameter per ``every_s`` (manual ones all kept)."""
    if not every_s:
        return list(readings)
    last: dict[str, datetime] = {}
    out = []
    for r in readings:
        if r.quality & Quality.MANUAL or PARAMETERS.get(r.parameter, None) is None:
            out.append(r)
            continue
        if PARAMETERS[r.parameter].episodic:
            out.append(r)  # a cuff reading is never thinned
            continue
        prev = last.get(r.parameter)
        if prev is None or (r.host_time - prev).total_seconds() >= every_s:
            last[r.parameter] = r.host_time
            out.append(r)
    return out


def is_manual(r: Reading) -> bool:
    return bool(r.quality & Quality.MANUAL) or r.source == "manual"


def observation_rows(x: SessionExport, every_s: float | None = None) -> list[tuple[Any, ...]]:
    """Every stored reading (monitor and manual) and every scale total, in time order."""
    sid = x.session_id
    rows: list[tuple[Any, ...]] = []
    for r in _downsampled(x.readings, every_s):
        info = PARAMETERS.get(r.parameter)
        manual = is_manual(r)
        rows.append(
            (
                sid,
                iso(r.host_time),
                x.minutes(r.host_time),
                r.parameter,
                r.value,
                r.unit,
                info.mdc_code if info is not None else None,
                r.mdc or (info.mdc if info is not None else None),
                "manual" if manual else "monitor",
                "" if manual else r.source,
                _quality(r.quality),
                None,
            )
        )
    for o in x.state.observations:
        param = SCALE_PARAMETERS.get(o.kind)
        if param is None or o.score is None:
            continue
        flags = ["manual"]
        if o.corrected:
            flags.append("corrected")
        if o.in_error:
            flags.append("entered_in_error")
        rows.append(
            (
                sid,
                iso(o.at),
                x.minutes(o.at),
                param,
                float(o.score),
                "{score}",
                None,
                None,
                "manual",
                "",
                ";".join(flags),
                o.entry_id,
            )
        )
    rows.sort(key=lambda row: (row[1], row[3]))
    return rows


def dose_rows(x: SessionExport) -> list[tuple[Any, ...]]:
    s, sid = x.state, x.session_id
    by_entry = {e.id: e for e in x.entries}
    rows: list[tuple[Any, ...]] = []
    for d in s.devices:
        rows.append(
            (
                sid,
                iso(d.at),
                x.minutes(d.at),
                "esketamine_device",
                "esketamine",
                "intranasal",
                d.mg,
                d.lot,
                d.number,
                None,
                None,
                by_entry[d.entry_id].author if d.entry_id in by_entry else "",
                d.entry_id,
            )
        )
    inf = s.infusion
    if inf is not None:
        e = by_entry.get(inf.entry_id)
        rows.append(
            (
                sid,
                iso(inf.start),
                x.minutes(inf.start),
                "iv_infusion",
                "ketamine",
                "intravenous",
                inf.given_mg if inf.given_mg is not None else inf.planned_mg,
                "",
                None,
                iso(inf.stop),
                inf.rate_mg_per_min,
                e.author if e is not None else "",
                inf.entry_id,
            )
        )
    for e in x.entries:
        if e.kind is EntryKind.OTHER_DOSE:
            rows.append(
                (
                    sid,
                    iso(e.at),
                    x.minutes(e.at),
                    "other",
                    str(e.data.get("description", "")),
                    "",
                    None,
                    "",
                    None,
                    None,
                    None,
                    e.author,
                    e.id,
                )
            )
    rows.sort(key=lambda row: (row[1], row[12]))
    return rows


def alarm_rows(x: SessionExport) -> list[tuple[Any, ...]]:
    rows = []
    for e in x.entries:
        if e.kind is not EntryKind.ALARM:
            continue
        d = e.data
        rows.append(
            (
                x.session_id,
                iso(e.at),
                x.minutes(e.at),
                str(d.get("key", "")),
                str(d.get("action", "")),
                str(d.get("priority", "")),
                str(d.get("family") or ""),
                bool(d.get("technical", False)),
                str(d.get("message", "")),
                e.authorised_by or e.author,
                e.id,
            )
        )
    rows.sort(key=lambda row: (row[1], row[10]))
    return rows


# ---- the JSON document -----------------------------------------------------------------------


def _signature(sig: Signature) -> dict[str, Any]:
    return {
        "entry_id": sig.entry_id,
        "at": iso(sig.at),
        "signer_id": sig.signer_id,
        "name": sig.name,
        "credentials": sig.credentials,
        "meaning_id": sig.meaning_id,
        "meaning": sig.meaning,
        "content_sha256": sig.content_sha256,
        "covers_entry_id": sig.covers_entry_id,
    }


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def session_document(x: SessionExport) -> dict[str, Any]:
    """The session as one JSON document (schema ``ketamon-session-export``, version 1)."""
    s = x.state
    p = s.patient
    figures = {k: _plain(v) for k, v in asdict(x.figures()).items()}
    observations = []
    for o in s.observations:
        item: dict[str, Any] = {
            "entry_id": o.entry_id,
            "kind": o.kind.value,
            "at": iso(o.at),
            "minutes_since_first_dose": x.minutes(o.at),
            "author": o.author,
            "corrected": o.corrected,
            "entered_in_error": o.in_error,
        }
        if o.kind in SCALE_PARAMETERS:
            item["score"] = o.score
        if o.kind is EntryKind.CADSS:
            item["items"] = {str(i): v for i, v in o.items}
        if o.kind is EntryKind.SIDE_EFFECT:
            se = SIDE_EFFECTS_BY_KEY.get(o.item)
            item.update(
                item=o.item,
                label=se.label if se is not None else o.item,
                severity=o.severity,
                serious=o.serious,
                onset=o.onset,
            )
        if o.text:
            item["text"] = o.text
        observations.append(item)
    d = s.discharge
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(x.generated_at),
        "generator": f"ketamon {__version__}",
        "site": x.site_name,
        "exported_by": x.exported_by,
        "session": {
            "id": s.session_id,
            "chair": s.chair,
            "status": x.status,
            "started": iso(s.started),
            "started_by": s.started_by,
            "first_dose": iso(s.first_dose),
            "ended": iso(s.ended_at),
            "treatment": s.plan.treatment.value,
            "plan": {
                "dose_mg": s.plan.dose_mg,
                "iv_mg_per_kg": s.plan.iv_mg_per_kg,
                "iv_minutes": s.plan.iv_minutes,
                "first_treatment": s.plan.first_treatment,
            },
            "monitor": s.device_description,
            "baseline_bp": _plain(s.baseline),
            "entry_count": s.entry_count,
            "record_sha256": x.record_sha256,
        },
        "patient": {
            "id": p.id,
            "mrn": p.mrn,
            "first_name": p.first_name,
            "middle_initial": p.middle_initial,
            "last_name": p.last_name,
            "date_of_birth": p.date_of_birth,
            "sex": p.sex,
            "weight_kg": p.weight_kg,
            "rems_enrolled": p.rems_enrolled,
        },
        "figures": figures,
        "doses": [dict(zip(DOSE_COLUMNS, r, strict=True)) for r in dose_rows(x)],
        "observations": observations,
        "manual_vitals": [
            {
                "entry_id": v.entry_id,
                "at": iso(v.at),
                "values": dict(v.values),
                "by": v.by,
                "entered_in_error": v.in_error,
            }
            for v in s.vitals
        ],
        "corrections": [
            {
                "entry_id": c.entry_id,
                "target_id": c.target_id,
                "target_kind": c.target_kind.value,
                "old": _plain(c.old),
                "new": _plain(c.changes),
                "entered_in_error": c.in_error,
                "reason": c.reason,
                "by": c.by,
                "at": iso(c.at),
            }
            for c in s.corrections
        ],
        "alarms": [dict(zip(ALARM_COLUMNS, r, strict=True)) for r in alarm_rows(x)],
        "limit_changes": [
            {
                "limit_id": lc.limit_id,
                "low": lc.low,
                "high": lc.high,
                "reason": lc.reason,
                "by": lc.by,
                "at": iso(lc.at),
            }
            for lc in s.limit_changes
        ],
        "discharge": None
        if d is None
        else {
            "at": iso(d.at),
            "by": d.by,
            "total_min": d.total_min,
            "ready_to_leave_min": d.ready_to_leave_min,
            "checklist": dict(d.checklist),
            "unmet": list(d.unmet),
            "authorised_by": d.authorised_by,
            "early_reason": d.early_reason,
            "override_reason": d.override_reason,
            "end_bp": _plain(d.end_bp),
        },
        "rems": {
            "enrolled": p.rems_enrolled,
            "discharge_answers": _plain(d.rems) if d is not None else {},
            "pmf_version": s.pmf_version,
            "pmf_values": _plain(s.pmf_values),
            "pmf_submissions": [
                {
                    "method": sub.method,
                    "submitted_at": sub.submitted_at,
                    "reference": sub.reference,
                    "form_version": sub.form_version,
                    "form_sha256": sub.form_sha256,
                    "by": sub.by,
                }
                for sub in s.pmf_submissions
            ],
        },
        "signature": None if s.signature is None else _signature(s.signature),
        "addenda": [
            {"entry_id": a.entry_id, "at": iso(a.at), "text": a.text, **_signature(a.signature)}
            for a in s.addenda
        ],
        "timeline": [
            {
                "entry_id": line.entry_id,
                "at": iso(line.at),
                "minutes_since_first_dose": x.minutes(line.at),
                "kind": line.kind.value,
                "label": KIND_LABELS[line.kind],
                "author": line.author,
                "authorised_by": line.authorised_by,
                "text": line.text,
            }
            for line in record_lines(x.entries)
        ],
        "entries": [
            {
                "id": e.id,
                "kind": e.kind.value,
                "at": iso(e.at),
                "author_id": e.author_id,
                "author": e.author,
                "authorised_by_id": e.authorised_by_id,
                "authorised_by": e.authorised_by,
                "data": _plain(e.data),
            }
            for e in x.entries
        ],
        "readings": [
            {
                "at": iso(r.host_time),
                "device_time": iso(r.device_time),
                "parameter": r.parameter,
                "value": r.value,
                "unit": r.unit,
                "mdc": r.mdc,
                "source": "manual" if is_manual(r) else "monitor",
                "device": "" if is_manual(r) else r.source,
                "quality": r.quality.names(),
            }
            for r in x.readings
        ],
    }
