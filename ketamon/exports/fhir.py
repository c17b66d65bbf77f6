"""The session as a FHIR R4 Bundle (type ``collection``), validated with ``fhir.resources``.

Resources: the Patient, the Encounter (the session), a Device per monitor, an Observation per
vital reading (LOINC and MDC codings, UCUM units; a cuff reading is one blood-pressure panel with
systolic, diastolic and mean components), a MedicationAdministration per dose (the lot in a
contained Medication's batch), an Observation per MOAA/S, RASS and CADSS total, an AdverseEvent
per side effect marked serious, the signing Practitioner(s), and a Provenance per signature
(its manifestation, and the SHA-256 of the signed content).

``fhir.resources`` 8 ships its R4-compatible models as ``R4B`` (FHIR 4.3): the resources used
here did not change between R4 (4.0.1) and R4B, so a bundle that validates against them is a
valid R4 bundle. Pleth (a waveform) is never included; numeric trends are thinned only when the
caller asks (``every_s``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from devices.readings import PARAMETERS, Reading
from ketamon import __version__
from ketamon.domain.record import EntryKind, Signature
from ketamon.domain.side_effects import SIDE_EFFECTS_BY_KEY
from ketamon.exports.files import ExportError
from ketamon.exports.record import SessionExport, _downsampled, is_manual, iso

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MRN_SYSTEM = "urn:ketamon:mrn"
SCALE_SYSTEM = "urn:ketamon:scale"
NAMESPACE = uuid.UUID("6f1f7c6e-8a55-4c36-9a8e-2b1d1e0c4b11")

#: parameter → (LOINC code, LOINC display); parameters without one carry their MDC code only
LOINC_CODES: dict[str, tuple[str, str]] = {
    "nibp_sys": ("8480-6", "Systolic blood pressure"),
    "nibp_dia": ("8462-4", "Diastolic blood pressure"),
    "nibp_mean": ("8478-0", "Mean blood pressure"),
    "hr": ("8867-4", "Heart rate"),
    "pr": ("8889-8", "Heart rate by Pulse oximetry"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    "rr": ("9279-1", "Respiratory rate"),
    "temp": ("8310-5", "Body temperature"),
}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_MDC = (150020, "MDC_PRESS_BLD_NONINV")
#: a cuff's systolic, diastolic and mean within this many seconds are one measurement
BP_PAIR_S = 5.0
ROUTES = {
    "intranasal": ("46713006", "Nasal route"),
    "intravenous": ("47625008", "Intravenous route"),
}
SCALES = {
    EntryKind.MOAAS: ("moaas", "MOAA/S score"),
    EntryKind.RASS: ("rass", "RASS score"),
    EntryKind.CADSS: ("cadss-total", "CADSS total score (items 1-23)"),
}
# ISO/ASTM E1762-95 signature types (FHIR R4 signature-type value set)
SIGNATURE_TYPES = {
    "signature": ("1.2.840.10065.1.12.1.5", "Verification Signature"),
    "addendum": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
}


def _id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _ref(rid: str, display: str = "") -> dict[str, str]:
    out = {"reference": f"urn:uuid:{rid}"}
    if display:
        out["display"] = display
    return out


def _mdc_coding(code: int | None, ref: str | None) -> list[dict[str, str]]:
    if code is None:
        return []
    return [{"system": MDC, "code": str(code), "display": ref or ""}]


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _vital_code(parameter: str, r: Reading | None = None) -> dict[str, Any]:
    info = PARAMETERS.get(parameter)
    codings: list[dict[str, str]] = []
    if parameter in LOINC_CODES:
        code, display = LOINC_CODES[parameter]
        codings.append({"system": LOINC, "code": code, "display": display})
    if info is not None:
        codings += _mdc_coding(info.mdc_code, (r.mdc if r else None) or info.mdc)
    return {"coding": codings, "text": info.label if info is not None else parameter}


def _gender(sex: str | None) -> str:
    s = (sex or "").strip().lower()
    return {"f": "female", "female": "female", "m": "male", "male": "male"}.get(s, "unknown")


def _signature_block(kind: str, sig: Signature, who: dict[str, str]) -> dict[str, Any]:
    code, display = SIGNATURE_TYPES[kind]
    manifestation = {
        "name": sig.name,
        "credentials": sig.credentials,
        "at": iso(sig.at),
        "meaning_id": sig.meaning_id,
        "meaning": sig.meaning,
        "content_sha256": sig.content_sha256,
        "covers_entry_id": sig.covers_entry_id,
    }
    return {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": code, "display": display}],
        "when": iso(sig.at),
        "who": who,
        "sigFormat": "application/json",
        "data": base64.b64encode(
            json.dumps(manifestation, sort_keys=True, ensure_ascii=False).encode()
        ).decode(),
    }


def fhir_bundle(x: SessionExport, every_s: float | None = None) -> dict[str, Any]:
    """The bundle as JSON-ready dicts (validate with :func:`validate_bundle`)."""
    s = x.state
    sid = x.session_id
    if s.signature is None:
        raise ExportError(
            f"session {sid} is not signed: the FHIR bundle carries the physician's signature "
            "in its Provenance (sign the session in the review desk first)"
        )
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> dict[str, str]:
        entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
        return _ref(resource["id"])

    p = s.patient
    patient_id = _id(sid, "patient", p.mrn)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": MRN_SYSTEM, "value": p.mrn}],
        "name": [
            {
                "family": p.last_name,
                "given": [g for g in (p.first_name, p.middle_initial) if g],
                "text": p.label,
            }
        ],
        "gender": _gender(p.sex),
    }
    if p.date_of_birth:
        patient["birthDate"] = p.date_of_birth
    subject = add(patient)
    subject["display"] = p.label

    encounter_id = _id(sid, "encounter")
    period: dict[str, Any] = {"start": iso(s.started)}
    if s.ended_at is not None:
        period["end"] = iso(s.ended_at)
    enc = add(
        {
            "resourceType": "Encounter",
            "id": encounter_id,
            "identifier": [{"system": "urn:ketamon:session", "value": str(sid)}],
            "status": "finished" if s.ended else "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "type": [{"text": f"{s.plan.treatment.value.replace('_', ' ')} session"}],
            "subject": subject,
            "period": period,
            "location": [{"location": {"display": s.chair}}],
        }
    )

    devices: dict[str, dict[str, str]] = {}
    for r in x.readings:
        if is_manual(r) or r.source in devices:
            continue
        name = r.source or s.device_description or "monitor"
        devices[r.source] = add(
            {
                "resourceType": "Device",
                "id": _id(sid, "device", r.source),
                "deviceName": [{"name": name, "type": "user-friendly-name"}],
                "type": {
                    "coding": [
                        {
                            "system": MDC,
                            "code": "69965",
                            "display": "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS",
                        }
                    ],
                    "text": "Physiological monitor",
                },
                "patient": subject,
            }
        )

    vital_category = [
        {"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}
    ]

    def observation(key: str, at: datetime, r: Reading, body: dict[str, Any]) -> None:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _id(sid, "obs", key),
            "status": "final",
            "category": vital_category,
            **body,
            "subject": subject,
            "encounter": enc,
            "effectiveDateTime": iso(at),
        }
        if is_manual(r):
            obs["method"] = {"text": "entered by hand"}
        elif r.source in devices:
            obs["device"] = devices[r.source]
        if not r.valid:
            obs["status"] = "entered-in-error"
        elif r.quality.names():
            obs["note"] = [{"text": "quality: " + ", ".join(r.quality.names())}]
        add(obs)

    readings = _downsampled(x.readings, every_s)
    used: set[int] = set()
    for i, r in enumerate(readings):
        if i in used:
            continue
        if r.parameter in ("nibp_sys", "nibp_dia", "nibp_mean"):
            group = _bp_group(readings, i, used)
            comps = []
            for part in group:
                comps.append(
                    {
                        "code": _vital_code(part.parameter, part),
                        "valueQuantity": _quantity(part.value, part.unit),
                    }
                )
            observation(
                f"bp/{r.host_time.isoformat()}/{r.source}/{i}",
                r.host_time,
                r,
                {
                    "code": {
                        "coding": [
                            {"system": LOINC, "code": BP_PANEL[0], "display": BP_PANEL[1]},
                            {"system": MDC, "code": str(BP_MDC[0]), "display": BP_MDC[1]},
                        ],
                        "text": "Blood pressure (cuff)",
                    },
                    "component": comps,
                },
            )
            continue
        used.add(i)
        observation(
            f"{r.parameter}/{r.host_time.isoformat()}/{r.source}/{i}",
            r.host_time,
            r,
            {"code": _vital_code(r.parameter, r), "valueQuantity": _quantity(r.value, r.unit)},
        )

    for o in s.observations:
        scale = SCALES.get(o.kind)
        if scale is None or o.score is None:
            continue
        code, label = scale
        scale_obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _id(sid, "scale", o.entry_id),
            "identifier": [{"system": "urn:ketamon:entry", "value": str(o.entry_id)}],
            "status": "entered-in-error"
            if o.in_error
            else ("amended" if o.corrected else "final"),
            "category": [
                {"coding": [{"system": OBS_CATEGORY, "code": "survey", "display": "Survey"}]}
            ],
            "code": {"coding": [{"system": SCALE_SYSTEM, "code": code}], "text": label},
            "subject": subject,
            "encounter": enc,
            "effectiveDateTime": iso(o.at),
            "performer": [{"display": o.author}],
            "valueInteger": o.score,
        }
        add(scale_obs)

    by_entry = {e.id: e for e in x.entries}

    def administration(
        key: object,
        drug: str,
        route: str,
        mg: float,
        lot: str,
        effective: dict[str, Any],
        entry_id: int,
    ) -> None:
        rcode, rdisplay = ROUTES[route]
        med: dict[str, Any] = {"resourceType": "Medication", "id": "med", "code": {"text": drug}}
        if lot:
            med["batch"] = {"lotNumber": lot}
        author = by_entry[entry_id].author if entry_id in by_entry else ""
        add(
            {
                "resourceType": "MedicationAdministration",
                "id": _id(sid, "dose", key),
                "identifier": [{"system": "urn:ketamon:entry", "value": str(entry_id)}],
                "contained": [med],
                "status": "completed",
                "medicationReference": {"reference": "#med", "display": drug},
                "subject": subject,
                "context": enc,
                **effective,
                "performer": [{"actor": {"display": author}}] if author else [],
                "dosage": {
                    "route": {"coding": [{"system": SNOMED, "code": rcode, "display": rdisplay}]},
                    "dose": _quantity(mg, "mg"),
                },
            }
        )

    for d in s.devices:
        administration(
            d.entry_id,
            f"esketamine nasal spray device {d.number} ({d.mg:g} mg)",
            "intranasal",
            d.mg,
            d.lot,
            {"effectiveDateTime": iso(d.at)},
            d.entry_id,
        )
    inf = s.infusion
    if inf is not None:
        eff: dict[str, Any] = {"effectivePeriod": {"start": iso(inf.start)}}
        if inf.stop is not None:
            eff["effectivePeriod"]["end"] = iso(inf.stop)
        administration(
            inf.entry_id,
            "ketamine intravenous infusion",
            "intravenous",
            inf.given_mg if inf.given_mg is not None else inf.planned_mg,
            "",
            eff,
            inf.entry_id,
        )

    for o in s.live(EntryKind.SIDE_EFFECT):
        if not o.serious:
            continue
        se = SIDE_EFFECTS_BY_KEY.get(o.item)
        label = se.label if se is not None else o.item
        add(
            {
                "resourceType": "AdverseEvent",
                "id": _id(sid, "sae", o.entry_id),
                "identifier": {"system": "urn:ketamon:entry", "value": str(o.entry_id)},
                "actuality": "actual",
                "event": {"text": label + (f": {o.text}" if o.text else "")},
                "subject": subject,
                "encounter": enc,
                "date": iso(o.at),
                "recordedDate": iso(o.at),
                "recorder": {"display": o.author},
                "seriousness": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "adverse-event-seriousness",
                            "code": "serious",
                            "display": "Serious",
                        }
                    ]
                },
                "severity": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "adverse-event-severity",
                            "code": _severity(o.severity),
                        }
                    ],
                    "text": o.severity,
                }
                if _severity(o.severity)
                else {"text": o.severity},
            }
        )

    targets = [{"reference": e["fullUrl"]} for e in entries]
    for n, (kind, sig, text) in enumerate(x.signatures()):
        who_display = sig.name + (f", {sig.credentials}" if sig.credentials else "")
        practitioner: dict[str, Any] = {
            "resourceType": "Practitioner",
            "id": _id(sid, "practitioner", sig.signer_id, sig.name),
            "name": [{"text": sig.name}],
        }
        if sig.credentials:
            practitioner["qualification"] = [{"code": {"text": sig.credentials}}]
        if not any(e["resource"]["id"] == practitioner["id"] for e in entries):
            add(practitioner)
        who = _ref(practitioner["id"], who_display)
        prov: dict[str, Any] = {
            "resourceType": "Provenance",
            "id": _id(sid, "provenance", sig.entry_id),
            "target": targets,
            "recorded": iso(sig.at),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "UPDATE" if kind == "addendum" else "CREATE",
                    }
                ],
                "text": f"{sig.meaning}" + (f" (addendum: {text})" if text else ""),
            },
            "reason": [{"text": sig.meaning}],
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "provenance-participant-type",
                                "code": "verifier" if kind == "signature" else "author",
                            }
                        ]
                    },
                    "who": who,
                }
            ],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {
                            "system": "urn:ketamon:record-sha256",
                            "value": sig.content_sha256,
                        },
                        "display": f"session {sid} record up to entry {sig.covers_entry_id}",
                    },
                }
            ],
            "signature": [_signature_block(kind, sig, who)],
        }
        if n > 0:
            prov["target"] = targets
        add(prov)

    return {
        "resourceType": "Bundle",
        "id": _id(sid, "bundle", x.record_sha256),
        "meta": {"lastUpdated": iso(x.generated_at), "tag": [{"code": f"ketamon-{__version__}"}]},
        "identifier": {"system": "urn:ketamon:record-sha256", "value": x.record_sha256},
        "type": "collection",
        "timestamp": iso(x.generated_at),
        "entry": entries,
    }


def _severity(text: str) -> str:
    t = text.lower()
    return {"mild": "mild", "moderate": "moderate", "severe": "severe"}.get(t, "")


def _bp_group(readings: Sequence[Reading], i: int, used: set[int]) -> list[Reading]:
    """The cuff reading at ``i`` with its other parts from the same measurement."""
    first = readings[i]
    group = [first]
    used.add(i)
    seen = {first.parameter}
    j = i + 1
    while j < len(readings):
        r = readings[j]
        gap = (r.host_time - first.host_time).total_seconds()
        if gap > BP_PAIR_S:
            break
        if (
            j not in used
            and r.parameter in ("nibp_sys", "nibp_dia", "nibp_mean")
            and r.parameter not in seen
            and r.source == first.source
            and is_manual(r) == is_manual(first)
        ):
            group.append(r)
            seen.add(r.parameter)
            used.add(j)
        j += 1
    order = {"nibp_sys": 0, "nibp_dia": 1, "nibp_mean": 2}
    return sorted(group, key=lambda r: order[r.parameter])


def validate_bundle(doc: dict[str, Any], *, vital_sample: int | None = None) -> Any:
    """Parse ``doc`` with the ``fhir.resources`` models; raises :class:`ExportError` if invalid.

    ``vital_sample``: validate every resource but only the first N vital-sign Observations
    (they are all made by the same code; an 8-hour session has some 150,000 and validating
    them all takes about a minute). None validates everything (the tests do).
    """
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    if vital_sample is not None:
        kept, vitals = [], 0
        for e in doc["entry"]:
            r = e["resource"]
            if (
                r["resourceType"] == "Observation"
                and r["category"][0]["coding"][0]["code"] == "vital-signs"
            ):
                vitals += 1
                if vitals > vital_sample:
                    continue
            kept.append(e)
        doc = {**doc, "entry": kept}
    try:
        return Bundle.model_validate(doc)
    except ValidationError as exc:
        raise ExportError(f"the FHIR bundle does not validate: {exc}") from exc
