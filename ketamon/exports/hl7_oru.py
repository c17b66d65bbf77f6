"""HL7 v2.6 ORU^R01 messages for the clinic's interface engine, in the IHE PCD-01 shape.

Two kinds (devices.md §2.4): a batch of a session's readings (OBX-11 ``R``: as measured), and a
signed session (OBR-25 ``F``; an addendum's message is ``C``, a correction of what was sent):
the hand-entered vitals, the MOAA/S, RASS and CADSS totals, the doses with their lots, and the
signature manifestation. MSH-10 is the control id the outbox fixed for the message; MSH-21 names
the PCD-01 profile. OBX-3 carries the MDC code (``150021^MDC_PRESS_BLD_NONINV_SYS^MDC``), OBX-6
the UCUM unit, OBX-14 the observation time with its UTC offset, OBX-18 the monitor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from devices.readings import PARAMETERS, Reading
from ketamon.domain.record import EntryKind, SessionState
from ketamon.exports.record import is_manual

PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
SENDING_APP = "KETAMON"
#: containment (OBX-4) per parameter: MDS.VMD.CHANNEL.METRIC, as a multi-parameter monitor
CONTAINMENT = {
    "nibp_sys": "1.1.1.1",
    "nibp_dia": "1.1.1.2",
    "nibp_mean": "1.1.1.3",
    "hr": "1.2.1.1",
    "pr": "1.3.1.1",
    "spo2": "1.3.1.2",
    "pi": "1.3.1.3",
    "rr": "1.4.1.1",
    "etco2": "1.5.1.1",
    "temp": "1.6.1.1",
}
SCALE_CODES = {
    EntryKind.MOAAS: "MOAAS^MOAA/S score^99KTM",
    EntryKind.RASS: "RASS^RASS score^99KTM",
    EntryKind.CADSS: "CADSS^CADSS total score (items 1-23)^99KTM",
}


def esc(text: object) -> str:
    """HL7 escape sequences for the delimiters in a value."""
    s = str(text)
    return (
        s.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def ts(at: datetime) -> str:
    """HL7 DTM in UTC with its offset, to the second (PCD-01 style)."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _num(v: float) -> str:
    return f"{v:.10g}"


def _msh(control_id: str, now: datetime, facility: str, app: str, dest: str) -> str:
    fields = [
        "MSH",
        "^~\\&",
        SENDING_APP,
        esc(facility),
        esc(app),
        esc(dest),
        ts(now),
        "",
        "ORU^R01^ORU_R01",
        esc(control_id),
        "P",
        "2.6",
        "",
        "",
        "AL",
        "NE",
        "",
        "UNICODE UTF-8",
        "",
        "",
        PCD01_PROFILE,
    ]
    return "|".join(fields)


def _pid_pv1(state: SessionState, facility: str) -> list[str]:
    p = state.patient
    dob = (p.date_of_birth or "").replace("-", "")
    sex = {"f": "F", "female": "F", "m": "M", "male": "M"}.get((p.sex or "").lower(), "U")
    pid = (
        f"PID|||{esc(p.mrn)}^^^{esc(facility)}^MR||{esc(p.last_name)}^{esc(p.first_name)}"
        f"^{esc(p.middle_initial)}||{dob}|{sex}"
    )
    pv1 = f"PV1||O|{esc(state.chair)}^^^{esc(facility)}" + "|" * 15 + f"|{state.session_id}"
    return [pid, pv1]


def _obr(control_id: str, state: SessionState, start: datetime, end: datetime, status: str) -> str:
    fields = [
        "OBR",
        "1",
        f"{esc(control_id)}^{SENDING_APP}",
        f"S{state.session_id}^{SENDING_APP}",
        "182777000^monitoring of patient^SNOMED-CT",
        "",
        "",
        ts(start),
        ts(end),
        *[""] * 16,
        status,
    ]
    return "|".join(fields)


def _reading_obx(n: int, r: Reading, status: str) -> str:
    info = PARAMETERS.get(r.parameter)
    code = (
        f"{info.mdc_code}^{esc(r.mdc or info.mdc or r.parameter)}^MDC"
        if info is not None and info.mdc_code is not None
        else f"{esc(r.parameter)}^{esc(r.parameter)}^99KTM"
    )
    unit = f"{esc(r.unit)}^{esc(r.unit)}^UCUM"
    method = "MANUAL^entered by hand^99KTM" if is_manual(r) else ""
    device = "" if is_manual(r) else esc(r.source)
    fields = [
        "OBX",
        str(n),
        "NM",
        code,
        CONTAINMENT.get(r.parameter, "1.9.1.1"),
        _num(r.value),
        unit,
        "",
        "",
        "",
        "",
        status,
        "",
        "",
        ts(r.host_time),
        "",
        "",
        method,
        device,
    ]
    return "|".join(fields)


def readings_oru(
    control_id: str,
    state: SessionState,
    readings: Sequence[Reading],
    *,
    now: datetime,
    sending_facility: str,
    receiving_application: str = "",
    receiving_facility: str = "",
) -> str:
    """One batch of a session's stored readings (invalid ones are not sent)."""
    valid = [r for r in readings if r.valid]
    if not valid:
        raise ValueError("a readings message needs at least one valid reading")
    segs = [
        _msh(control_id, now, sending_facility, receiving_application, receiving_facility),
        *_pid_pv1(state, sending_facility),
        _obr(control_id, state, valid[0].host_time, valid[-1].host_time, "R"),
    ]
    segs += [_reading_obx(n, r, "R") for n, r in enumerate(valid, start=1)]
    return "\r".join(segs) + "\r"


def session_oru(
    control_id: str,
    state: SessionState,
    readings: Iterable[Reading],
    *,
    signature_entry_id: int,
    now: datetime,
    sending_facility: str,
    receiving_application: str = "",
    receiving_facility: str = "",
) -> str:
    """A signed session's final results (or, for an addendum's signature, the correction)."""
    addendum = next((a for a in state.addenda if a.entry_id == signature_entry_id), None)
    sig = addendum.signature if addendum is not None else state.signature
    if sig is None:
        raise ValueError(f"session {state.session_id} is not signed")
    status = "C" if addendum is not None else "F"
    end = state.ended_at or sig.at
    segs = [
        _msh(control_id, now, sending_facility, receiving_application, receiving_facility),
        *_pid_pv1(state, sending_facility),
        _obr(control_id, state, state.first_dose or state.started, end, status),
    ]
    obx: list[str] = []
    for r in readings:
        if is_manual(r) and r.valid:
            obx.append(_reading_obx(len(obx) + 1, r, status))
    for o in state.observations:
        code = SCALE_CODES.get(o.kind)
        if code is None or o.score is None or o.in_error:
            continue
        obx.append(
            f"OBX|{len(obx) + 1}|NM|{code}||{o.score}|{{score}}^{{score}}^UCUM|||||"
            f"{'C' if o.corrected else status}|||{ts(o.at)}||{esc(o.author)}"
        )
    for d in state.devices:  # the dose and its lot, tied by the sub-id (OBX-4)
        obx.append(
            f"OBX|{len(obx) + 1}|NM|DOSE^esketamine intranasal dose^99KTM|{d.number}"
            f"|{_num(d.mg)}|mg^mg^UCUM|||||{status}|||{ts(d.at)}"
        )
        obx.append(
            f"OBX|{len(obx) + 1}|ST|LOT^lot number^99KTM|{d.number}|{esc(d.lot)}||||||"
            f"{status}|||{ts(d.at)}"
        )
    inf = state.infusion
    if inf is not None:
        given = inf.given_mg if inf.given_mg is not None else inf.planned_mg
        obx.append(
            f"OBX|{len(obx) + 1}|NM|DOSE^ketamine intravenous dose^99KTM||{_num(given)}"
            f"|mg^mg^UCUM|||||{status}|||{ts(inf.start)}"
        )
    who = sig.name + (f", {sig.credentials}" if sig.credentials else "")
    text = f"Signed by {who} at {sig.at.astimezone(UTC).isoformat()}: {sig.meaning}"
    if addendum is not None:
        text = f"Addendum: {addendum.text} — {text}"
    text += f" (content SHA-256 {sig.content_sha256})"
    obx.append(
        f"OBX|{len(obx) + 1}|ST|SIGNATURE^signature manifestation^99KTM||{esc(text)}||||||"
        f"{status}|||{ts(sig.at)}"
    )
    return "\r".join(segs + obx) + "\r"
