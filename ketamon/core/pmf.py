"""The REMS Patient Monitoring Form (PMF) of an esketamine session (clinical.md §1.3-1.4, §8
items 30-36): the form filled from the record, what is still missing, its deadline, and the desk
commands that enter fields and record the submission.

The form's fields are versioned data, one TOML file per version in ``resources/pmf/``
(``pmf-<id>.toml``; see ``pmf-2024.toml`` for the format). A session's form is always built with
the definition of the version it was saved against (``state.pmf_version``, recorded with every
``PMF_FIELDS`` entry); a session with nothing saved yet uses the newest. Every version stays.

Each field names where its value comes from (``source``): the record (patient, plan, screening,
devices, discharge and its REMS answers), the site profile (``site.*``: the HCP and setting), or
``user``. A value a user entered (``PMF_FIELDS``) wins over the record. When the record and the
site lack a ``carry_over`` field it is taken from the patient's previous session and marked
"carried over, confirm": it counts as missing until a user enters (confirms) it.

No Qt and no database: monitor readings (for the 40-minute BP) are passed in by the caller.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ketamon.core import commands as c
from ketamon.core.desk import DeskContext, Reviewed, handles
from ketamon.core.ports import EntryDraft
from ketamon.core.session import Refused
from ketamon.domain.discharge import rems_answers
from ketamon.domain.record import EntryKind, SessionState, Signature
from ketamon.domain.roles import Action
from ketamon.domain.session_rules import Treatment
from ketamon.resources import resource

PMF_SCHEMA_VERSION = 1
FIELD_TYPES = ("text", "date", "yesno", "choice", "number", "bp")

#: every source ketamon knows how to fill (besides "user")
SOURCES = frozenset(
    {
        "patient.first_name",
        "patient.last_name",
        "patient.middle_initial",
        "patient.date_of_birth",
        "patient.sex",
        "patient.rems_enrolled",
        "plan.first_treatment",
        "screening.benzodiazepine",
        "screening.hypnotic",
        "screening.opioid",
        "screening.psychostimulant",
        "screening.maoi",
        "site.hcp_name",
        "site.hcp_phone",
        "site.hcp_email",
        "site.setting_name",
        "site.setting_address1",
        "site.setting_address2",
        "site.setting_city",
        "site.setting_state",
        "site.setting_zip",
        "site.rems_certified",
        "session.date",
        "dose.dose_mg",
        "dose.lots",
        "discharge.total_min",
        "discharge.ready_to_leave_min",
        "rems.vitals_ok_before",
        "rems.vitals_ok_end",
        "bp.predose",
        "bp.40min",
        "bp.end",
        "rems.sedation",
        "rems.dissociation",
        "rems.respiratory_depression",
        "rems.pulse_oximetry_used",
        "rems.serious_adverse_event",
        "user",
    }
)

#: where a field's value came from
RECORD, SITE, MONITOR, ENTERED, CARRIED, EMPTY = (
    "record",
    "site",
    "monitor",
    "entered",
    "carried_over",
    "",
)
CARRIED_NOTE = "carried over, confirm"


class PmfDefinitionError(ValueError):
    """A form definition is malformed; the message names the file and the field."""


# ---- the definition --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    id: str
    label: str
    section: str
    type: str  # text | date | yesno | choice | number | bp
    required: bool
    source: str
    choices: tuple[str, ...] = ()
    carry_over: bool = False
    #: the id of a yes/no field: this one applies only when that one is yes
    when: str = ""


@dataclass(frozen=True, slots=True)
class PmfDefinition:
    id: str
    title: str
    source: str
    fields: tuple[FieldSpec, ...]

    def field(self, field_id: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.id == field_id), None)

    @property
    def sections(self) -> list[str]:
        return list(dict.fromkeys(f.section for f in self.fields))


_FIELD_KEYS = {
    "id",
    "label",
    "section",
    "type",
    "required",
    "source",
    "choices",
    "carry_over",
    "when",
}


def definition_from_dict(data: Mapping[str, Any], origin: str = "PMF definition") -> PmfDefinition:
    def fail(msg: str) -> PmfDefinitionError:
        return PmfDefinitionError(f"{origin}: {msg}")

    if data.get("schema_version") != PMF_SCHEMA_VERSION:
        raise fail(
            f"schema_version must be {PMF_SCHEMA_VERSION}, got {data.get('schema_version')!r}"
        )
    for key in data:
        if key not in ("schema_version", "id", "title", "source", "field"):
            raise fail(f"unknown key {key!r}")
    for key in ("id", "title", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail(f"{key!r} must be a non-empty string, got {data.get(key)!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", data["id"]):
        raise fail(f"'id' must be letters, digits, '.', '_' or '-', got {data['id']!r}")
    raw = data.get("field")
    if not isinstance(raw, list) or not raw:
        raise fail("needs at least one [[field]]")
    fields: list[FieldSpec] = []
    seen: set[str] = set()
    for n, f in enumerate(raw, 1):
        if not isinstance(f, dict):
            raise fail(f"field {n} must be a table")
        fid = f.get("id")
        where = f"field {fid!r}" if isinstance(fid, str) and fid else f"field {n}"
        if not isinstance(fid, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", fid):
            raise fail(f"{where}: 'id' must be lower_snake_case, got {fid!r}")
        if fid in seen:
            raise fail(f"{where}: duplicate id")
        seen.add(fid)
        for key in f:
            if key not in _FIELD_KEYS:
                raise fail(f"{where}: unknown key {key!r}")
        for key in ("label", "section", "type", "source"):
            if not isinstance(f.get(key), str) or not f[key].strip():
                raise fail(f"{where}: {key!r} must be a non-empty string, got {f.get(key)!r}")
        if f["type"] not in FIELD_TYPES:
            raise fail(f"{where}: type must be one of {', '.join(FIELD_TYPES)}, got {f['type']!r}")
        if not isinstance(f.get("required"), bool):
            raise fail(f"{where}: 'required' must be true or false, got {f.get('required')!r}")
        if f["source"] not in SOURCES:
            raise fail(f"{where}: unknown source {f['source']!r}")
        choices = f.get("choices", [])
        if f["type"] == "choice":
            if (
                not isinstance(choices, list)
                or not choices
                or not all(isinstance(x, str) and x for x in choices)
                or len(set(choices)) != len(choices)
            ):
                raise fail(f"{where}: a choice field needs distinct non-empty 'choices'")
        elif "choices" in f:
            raise fail(f"{where}: 'choices' is only for type 'choice'")
        carry = f.get("carry_over", False)
        if not isinstance(carry, bool):
            raise fail(f"{where}: 'carry_over' must be true or false, got {carry!r}")
        when = f.get("when", "")
        if not isinstance(when, str):
            raise fail(f"{where}: 'when' must be a field id, got {when!r}")
        fields.append(
            FieldSpec(
                id=fid,
                label=f["label"],
                section=f["section"],
                type=f["type"],
                required=f["required"],
                source=f["source"],
                choices=tuple(choices),
                carry_over=carry,
                when=when,
            )
        )
    by_id = {f.id: f for f in fields}
    for f in fields:
        if f.when and (f.when not in by_id or by_id[f.when].type != "yesno"):
            raise fail(f"field {f.id!r}: 'when' must name a yes/no field, got {f.when!r}")
    return PmfDefinition(data["id"], data["title"], data["source"], tuple(fields))


def parse_definition(text: str, origin: str = "PMF definition") -> PmfDefinition:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PmfDefinitionError(f"{origin}: not valid TOML: {exc}") from exc
    return definition_from_dict(data, origin)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_definition(d: PmfDefinition) -> str:
    """The definition as TOML text (what :func:`parse_definition` reads back equal)."""
    lines = [
        f"schema_version = {PMF_SCHEMA_VERSION}",
        f"id = {_toml(d.id)}",
        f"title = {_toml(d.title)}",
        f"source = {_toml(d.source)}",
    ]
    for f in d.fields:
        lines += ["", "[[field]]"]
        for key in ("id", "label", "section", "type"):
            lines.append(f"{key} = {_toml(getattr(f, key))}")
        if f.type == "choice":
            lines.append(f"choices = {_toml(list(f.choices))}")
        lines.append(f"required = {_toml(f.required)}")
        lines.append(f"source = {_toml(f.source)}")
        if f.carry_over:
            lines.append("carry_over = true")
        if f.when:
            lines.append(f"when = {_toml(f.when)}")
    return "\n".join(lines) + "\n"


def _version_key(v: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[^\d]+", v))


Root = Traversable | Path


def _root(root: Root | None) -> Root:
    return resource("pmf") if root is None else root


def load_definitions(root: Root | None = None) -> dict[str, PmfDefinition]:
    """Every definition in ``root`` (default ``resources/pmf``), oldest version first."""
    out: dict[str, PmfDefinition] = {}
    base = _root(root)
    for node in base.iterdir():
        m = re.fullmatch(r"pmf-(.+)\.toml", node.name)
        if m is None:
            continue
        origin = f"pmf/{node.name}"
        d = parse_definition(node.read_text(encoding="utf-8"), origin)
        if d.id != m.group(1):
            raise PmfDefinitionError(f"{origin}: id {d.id!r} does not match the file name")
        out[d.id] = d
    if not out:
        raise PmfDefinitionError(f"{base}: no PMF definitions (pmf-<version>.toml)")
    return {k: out[k] for k in sorted(out, key=_version_key)}


def load_definition(version: str | None = None, root: Root | None = None) -> PmfDefinition:
    """The definition of ``version``, or the newest when ``version`` is None or empty."""
    defs = load_definitions(root)
    if not version:
        return list(defs.values())[-1]
    if version not in defs:
        raise PmfDefinitionError(
            f"no PMF definition for form version {version!r} (known: {', '.join(defs)})"
        )
    return defs[version]


# ---- values ----------------------------------------------------------------------------------


def check_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """``value`` normalised to the field's JSON form, or an error text naming the field."""
    name = f"{spec.label} ({spec.id})"
    if value is None:
        return None, f"{name}: enter a value"
    t = spec.type
    if t == "text":
        if not isinstance(value, str):
            return None, f"{name} must be text"
        return value.strip(), None
    if t == "yesno":
        if not isinstance(value, bool):
            return None, f"{name} must be yes or no"
        return value, None
    if t == "choice":
        if value not in spec.choices:
            return None, f"{name} must be one of {', '.join(spec.choices)}"
        return value, None
    if t == "date":
        try:
            return date.fromisoformat(str(value)).isoformat(), None
        except ValueError:
            return None, f"{name} must be a date (YYYY-MM-DD)"
    if t == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return None, f"{name} must be a number"
        if value < 0:
            return None, f"{name} must not be negative"
        return _num(value), None
    # bp: [systolic, diastolic], or the text "120/80"
    if isinstance(value, str) and "/" in value:
        try:
            value = [float(x) for x in value.split("/")]
        except ValueError:
            return None, f"{name} must be systolic/diastolic, e.g. 120/80"
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or any(isinstance(x, bool) or not isinstance(x, int | float) for x in value)
        or not (40 <= value[0] <= 300 and 20 <= value[1] <= 200 and value[1] < value[0])
    ):
        return None, f"{name} must be systolic/diastolic mmHg (40-300 / 20-200), e.g. 120/80"
    return [_num(value[0]), _num(value[1])], None


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def display(spec: FieldSpec, value: Any) -> str:
    """The value as printed on the form ("" when empty)."""
    if _empty(value):
        return ""
    if spec.type == "yesno":
        return "Yes" if value else "No"
    if spec.type == "bp":
        return f"{_num(value[0])}/{_num(value[1])}"
    if spec.type == "number":
        return f"{_num(value)}"
    return str(value)


# ---- the filled form -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilledField:
    spec: FieldSpec
    value: Any  # JSON: str, bool, number, [sys, dia], or None when empty
    origin: str  # record | site | monitor | entered | carried_over | "" (empty)
    applies: bool = True  # False: its `when` field is not yes (not asked)

    @property
    def note(self) -> str:
        return CARRIED_NOTE if self.origin == CARRIED else ""

    @property
    def missing(self) -> bool:
        """Required and not filled (a carried-over value counts until it is confirmed)."""
        if not self.spec.required or not self.applies:
            return False
        return _empty(self.value) or self.origin == CARRIED

    @property
    def text(self) -> str:
        return display(self.spec, self.value)


@dataclass(frozen=True, slots=True)
class PmfForm:
    definition: PmfDefinition
    session_id: int
    required: bool  # False: this session needs no PMF (not esketamine, or no dose given)
    fields: tuple[FilledField, ...]
    patient: str = ""
    chair: str = ""
    session_date: str = ""
    signature: Signature | None = None

    @property
    def version(self) -> str:
        return self.definition.id

    def get(self, field_id: str) -> FilledField:
        for f in self.fields:
            if f.spec.id == field_id:
                return f
        raise KeyError(field_id)

    def value(self, field_id: str) -> Any:
        return self.get(field_id).value

    @property
    def missing(self) -> list[str]:
        """Labels of the required fields still empty or only carried over."""
        if not self.required:
            return []
        return [f.spec.label for f in self.fields if f.missing]

    @property
    def carried_over(self) -> list[str]:
        return [f.spec.label for f in self.fields if f.origin == CARRIED]

    def values(self) -> dict[str, Any]:
        return {f.spec.id: f.value for f in self.fields if f.applies}

    @property
    def sha256(self) -> str:
        """SHA-256 of the filled form as canonical JSON (version, session, every value)."""
        doc = {
            "form_version": self.version,
            "session_id": self.session_id,
            "values": self.values(),
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "form_version": self.version,
            "title": self.definition.title,
            "required": self.required,
            "patient": self.patient,
            "session_date": self.session_date,
            "fields": [
                {
                    "id": f.spec.id,
                    "label": f.spec.label,
                    "section": f.spec.section,
                    "type": f.spec.type,
                    "required": f.spec.required,
                    "applies": f.applies,
                    "value": f.value,
                    "text": f.text,
                    "source": f.spec.source,
                    "origin": f.origin,
                    "note": f.note,
                    "missing": f.missing,
                }
                for f in self.fields
            ],
            "missing": self.missing,
            "form_sha256": self.sha256,
            "signed": self.signature is not None,
        }


#: a reading as callers pass it: (parameter, value, time), or an object with those attributes
ReadingLike = Any


def _readings(readings: Iterable[ReadingLike] | None) -> list[tuple[str, float, datetime]]:
    out = []
    for r in readings or ():
        if isinstance(r, tuple | list):
            p, v, t = r
        else:
            p, v, t = r.parameter, r.value, r.host_time
        out.append((str(p), float(v), t))
    return out


def pmf_required(state: SessionState, site: Mapping[str, Any]) -> bool:
    """An esketamine session in which a dose was given needs a PMF (unless the site says no:
    inpatient settings do not submit them, clinical.md §1.3)."""
    return (
        bool(site.get("pmf_required", True))
        and state.plan.treatment is Treatment.ESKETAMINE
        and state.first_dose is not None
    )


def _local(t: datetime, tz: tzinfo | None) -> date:
    return t.astimezone(tz).date()


def session_date(state: SessionState, tz: tzinfo | None = None) -> date:
    """The treatment date: the first dose's (else the start's) date in ``tz`` (None: local)."""
    return _local(state.first_dose or state.started, tz)


def _bp_pairs(
    state: SessionState, readings: list[tuple[str, float, datetime]]
) -> list[tuple[datetime, tuple[float, float]]]:
    """Cuff BPs: manual vitals entries and monitor readings (systolic and diastolic paired)."""
    out: list[tuple[datetime, tuple[float, float]]] = []
    for v in state.vitals:
        if not v.in_error and "nibp_sys" in v.values and "nibp_dia" in v.values:
            out.append((v.at, (v.values["nibp_sys"], v.values["nibp_dia"])))
    dias = [(t, val) for p, val, t in readings if p == "nibp_dia"]
    for p, val, t in readings:
        if p != "nibp_sys":
            continue
        near = [(abs((dt - t).total_seconds()), dv) for dt, dv in dias]
        near = [x for x in near if x[0] <= 10]
        if near:
            out.append((t, (val, min(near)[1])))
    return out


def bp_40min(
    state: SessionState,
    site: Mapping[str, Any],
    readings: Iterable[ReadingLike] | None = None,
) -> tuple[tuple[float, float] | None, str]:
    """The cuff BP nearest 40 min after the first dose inside the site's window (35-45 min by
    default), and where it came from (record: a manual entry; monitor: a reading)."""
    if state.first_dose is None:
        return None, EMPTY
    lo, hi = (float(x) for x in site.get("bp40_window_min", (35.0, 45.0)))
    manual = {v.at for v in state.vitals}
    best: tuple[float, datetime, tuple[float, float]] | None = None
    for t, bp in _bp_pairs(state, _readings(readings)):
        minute = (t - state.first_dose).total_seconds() / 60.0
        if lo <= minute <= hi:
            cand = (abs(minute - 40.0), t, bp)
            if best is None or cand[0] < best[0]:
                best = cand
    if best is None:
        return None, EMPTY
    return best[2], RECORD if best[1] in manual else MONITOR


def _sex(v: Any) -> str | None:
    if _empty(v):
        return None
    s = str(v).strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(s, "other")


def _from_record(
    source: str,
    state: SessionState,
    site: Mapping[str, Any],
    readings: Iterable[ReadingLike] | None,
    tz: tzinfo | None,
) -> tuple[Any, str]:
    """A source's value and origin (None, "" when the record and the site lack it)."""
    kind, _, key = source.partition(".")
    p, s, dis = state.patient, state.screening, state.discharge
    v: Any = None
    if kind == "site":
        v = site.get(key)
        return (None, EMPTY) if _empty(v) else (v, SITE)
    if kind == "patient":
        v = {
            "first_name": p.first_name,
            "last_name": p.last_name,
            "middle_initial": p.middle_initial,
            "date_of_birth": p.date_of_birth,
            "sex": _sex(p.sex),
            "rems_enrolled": p.rems_enrolled,
        }[key]
    elif source == "plan.first_treatment":
        v = state.plan.first_treatment
    elif kind == "screening":
        v = None if s is None else getattr(s, key)
    elif source == "session.date":
        v = session_date(state, tz).isoformat()
    elif source == "dose.dose_mg":
        mg = sum(d.mg for d in state.devices) or state.plan.dose_mg
        v = None if not mg else {56.0: "56 mg", 84.0: "84 mg"}.get(float(mg), "other")
    elif source == "dose.lots":
        lots = [d.lot.strip() for d in state.devices if d.lot.strip()]
        v = ", ".join(dict.fromkeys(lots)) or None
    elif kind == "discharge":
        v = None if dis is None else getattr(dis, key)
    elif source == "bp.predose":
        bp = (s.bp if s is not None else None) or state.baseline
        v = None if bp is None else [_num(bp[0]), _num(bp[1])]
    elif source == "bp.end":
        v = None if dis is None or dis.end_bp is None else [_num(x) for x in dis.end_bp]
    elif source == "bp.40min":
        bp, origin = bp_40min(state, site, readings)
        return (None, EMPTY) if bp is None else ([_num(bp[0]), _num(bp[1])], origin)
    elif kind == "rems":
        if dis is not None and key in dis.rems:
            v = dis.rems[key]
        elif dis is not None and key == "pulse_oximetry_used":
            v = dis.pulse_oximetry_used
        elif dis is None and key not in ("vitals_ok_end", "pulse_oximetry_used"):
            # no discharge (cancelled after the dose): what the record itself shows
            v = rems_answers(state, vitals_ok_end=None, pulse_oximetry_used=False).get(key)
    if isinstance(v, float):
        v = _num(v)
    return (None, EMPTY) if _empty(v) else (v, RECORD)


def build_form(
    reviewed: Reviewed,
    site: Mapping[str, Any],
    previous: Reviewed | None = None,
    definition: PmfDefinition | None = None,
    *,
    readings: Iterable[ReadingLike] | None = None,
    tz: tzinfo | None = None,
    root: Root | None = None,
) -> PmfForm:
    """The session's PMF filled from what was entered, the record, the site and (for
    ``carry_over`` fields the others lack) the patient's ``previous`` session.

    ``definition``: None builds with the version the form was saved against, or the newest.
    ``readings``: the session's stored monitor readings (for the 40-minute BP).
    ``tz``: the zone of the treatment date (None: this computer's local zone).
    """
    state = reviewed.state
    if definition is None:
        definition = load_definition(state.pmf_version or None, root)
    prev: PmfForm | None = None
    if previous is not None and previous.state.session_id != state.session_id:
        prev_def = definition
        if previous.state.pmf_version and previous.state.pmf_version != definition.id:
            try:
                prev_def = load_definition(previous.state.pmf_version, root)
            except PmfDefinitionError:
                prev_def = definition
        prev = build_form(previous, site, None, prev_def, tz=tz)
    filled: list[FilledField] = []
    entered = state.pmf_values
    for spec in definition.fields:
        value: Any = None
        origin = EMPTY
        if spec.id in entered and not _empty(entered[spec.id]):
            value, origin = entered[spec.id], ENTERED
        elif spec.source != "user":
            value, origin = _from_record(spec.source, state, site, readings, tz)
        if origin == EMPTY and spec.carry_over and prev is not None:
            try:
                before = prev.get(spec.id)
            except KeyError:
                before = None
            if before is not None and not _empty(before.value) and before.origin != CARRIED:
                value, origin = before.value, CARRIED
        filled.append(FilledField(spec, value, origin))
    by_id = {f.spec.id: f for f in filled}
    filled = [
        FilledField(f.spec, f.value, f.origin, applies=by_id[f.spec.when].value is True)
        if f.spec.when
        else f
        for f in filled
    ]
    return PmfForm(
        definition=definition,
        session_id=state.session_id,
        required=pmf_required(state, site),
        fields=tuple(filled),
        patient=state.patient.label,
        chair=state.chair,
        session_date=session_date(state, tz).isoformat(),
        signature=state.signature,
    )


def missing_fields(
    reviewed: Reviewed,
    site: Mapping[str, Any],
    *,
    readings: Iterable[ReadingLike] | None = None,
    definition: PmfDefinition | None = None,
) -> list[str]:
    """Labels of the required fields still empty ([] when the session needs no PMF). A value
    entered with PMF_FIELDS counts; one carried over from a previous session does not until it
    is entered (confirmed). Pass the session's ``readings`` or the 40-minute BP may be missing
    when only the monitor measured it."""
    return build_form(reviewed, site, definition=definition, readings=readings).missing


# ---- the deadline ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PmfDeadline:
    status: str  # not_required | due | warned | overdue | submitted
    due_date: date | None
    days_left: int | None  # negative when overdue


def deadline(
    state: SessionState, now: datetime, site: Mapping[str, Any], *, tz: tzinfo | None = None
) -> PmfDeadline:
    """The PMF's status: due within ``pmf_deadline_days`` calendar days of the session date
    (7 by default), warned from day ``pmf_warn_day`` (5), overdue after the due date."""
    if not pmf_required(state, site):
        return PmfDeadline("not_required", None, None)
    day0 = session_date(state, tz)
    due = day0 + timedelta(days=int(site.get("pmf_deadline_days", 7)))
    today = _local(now, tz)
    left = (due - today).days
    if state.pmf_submissions:
        return PmfDeadline("submitted", due, left)
    if today > due:
        return PmfDeadline("overdue", due, left)
    if (today - day0).days >= int(site.get("pmf_warn_day", 5)):
        return PmfDeadline("warned", due, left)
    return PmfDeadline("due", due, left)


@dataclass(frozen=True, slots=True)
class BoardItem:
    session_id: int
    patient: str
    session_date: date
    deadline: PmfDeadline


@dataclass(frozen=True, slots=True)
class PmfBoard:
    counts: Mapping[str, int]  # due, warned, overdue, submitted
    items: tuple[BoardItem, ...]  # oldest session first (not_required left out)


def board(
    reviews: Iterable[Reviewed | SessionState],
    now: datetime,
    site: Mapping[str, Any],
    *,
    tz: tzinfo | None = None,
) -> PmfBoard:
    items = []
    for r in reviews:
        state = r.state if isinstance(r, Reviewed) else r
        d = deadline(state, now, site, tz=tz)
        if d.status != "not_required":
            items.append(
                BoardItem(state.session_id, state.patient.label, session_date(state, tz), d)
            )
    items.sort(key=lambda i: (i.session_date, i.session_id))
    counts = Counter(i.deadline.status for i in items)
    return PmfBoard(
        {k: counts.get(k, 0) for k in ("due", "warned", "overdue", "submitted")}, tuple(items)
    )


# ---- desk commands ---------------------------------------------------------------------------


@handles(c.EnterPmfFields, Action.PMF)
def enter_fields(
    reviewed: Reviewed, cmd: c.EnterPmfFields, ctx: DeskContext
) -> Sequence[EntryDraft]:
    state = reviewed.state
    if state.signed:
        raise Refused(
            ["The session is signed: its PMF values are frozen (add a signed addendum instead)"]
        )
    if not pmf_required(state, ctx.site):
        raise Refused([f"Session {state.session_id} needs no Patient Monitoring Form"])
    if state.pmf_version and cmd.form_version != state.pmf_version:
        raise Refused(
            [
                f"This form was saved against version {state.pmf_version!r}: enter its fields "
                f"against that version, not {cmd.form_version!r}"
            ]
        )
    try:
        definition = load_definition(cmd.form_version or "-")
    except PmfDefinitionError as exc:
        raise Refused([str(exc)]) from exc
    if not cmd.values:
        raise Refused(["Enter at least one PMF field"])
    unknown = [k for k in cmd.values if definition.field(str(k)) is None]
    if unknown:
        raise Refused(
            [f"Unknown PMF field(s) for version {definition.id}: {', '.join(map(str, unknown))}"]
        )
    values: dict[str, Any] = {}
    problems: list[str] = []
    for k, v in cmd.values.items():
        spec = definition.field(str(k))
        assert spec is not None
        norm, err = check_value(spec, v)
        if err:
            problems.append(err)
        else:
            values[spec.id] = norm
    if problems:
        raise Refused(problems)
    return [
        EntryDraft(
            EntryKind.PMF_FIELDS, ctx.now, {"values": values, "form_version": definition.id}
        )
    ]


SUBMISSION_METHODS = ("portal", "fax")


@handles(c.RecordPmfSubmission, Action.PMF)
def record_submission(
    reviewed: Reviewed, cmd: c.RecordPmfSubmission, ctx: DeskContext
) -> Sequence[EntryDraft]:
    state = reviewed.state
    if not pmf_required(state, ctx.site):
        raise Refused([f"Session {state.session_id} needs no Patient Monitoring Form"])
    problems: list[str] = []
    if not state.signed:
        problems.append("Sign the session first: the form is submitted as signed")
    if cmd.method not in SUBMISSION_METHODS:
        problems.append(f"Submission method must be portal or fax, got {cmd.method!r}")
    if not cmd.reference.strip():
        problems.append("Enter the confirmation reference the REMS gave")
    when: datetime | None = None
    try:
        when = datetime.fromisoformat(cmd.submitted_at.strip())
    except ValueError:
        problems.append(f"Submission time must be an ISO date and time, got {cmd.submitted_at!r}")
    if when is not None:
        if when.tzinfo is None:
            when = when.astimezone()  # as the user's computer reads it
        if when > ctx.now:
            problems.append("The submission time is in the future")
        elif when < state.started:
            problems.append("The submission time is before the session started")
    if problems:
        raise Refused(problems)
    assert when is not None
    form = build_form(reviewed, ctx.site, readings=list(ctx.readings) or None)
    data = {
        "method": cmd.method,
        "submitted_at": when.isoformat(),
        "reference": cmd.reference.strip(),
        "form_version": form.version,
        "form_sha256": form.sha256,
    }
    return [EntryDraft(EntryKind.PMF_SUBMITTED, ctx.now, data)]
