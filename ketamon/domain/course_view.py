"""The course view's figures: per session of a course, the dose, peak BP and its rise over the
pre-dose baseline, the lowest SpO2 and MOAA/S, peak CADSS, side effects and SAEs, and the
PHQ-9 / MADRS / CGI ratings, set against the plan's schedule. Pure: built from the sessions'
folded states and their vital-sign extremes (the caller queries those)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from ketamon.domain.course import CourseState, Slot, esketamine_dose_note, schedule
from ketamon.domain.record import EntryKind, SessionState
from ketamon.domain.screening import precaution_lines
from ketamon.domain.session_rules import Treatment

#: (lowest, highest) per parameter, from the valid readings after the first dose
Extremes = Mapping[str, tuple[float, float]]
TREND_SCALES = ("phq9", "madrs", "cgi_s", "cgi_i")


@dataclass(frozen=True, slots=True)
class CourseSessionRow:
    number: int
    session_id: int
    day: date
    treatment: str
    dose: str
    dose_mg: float | None
    peak_bp: tuple[float, float] | None = None
    rise: tuple[float, float] | None = None
    lowest_spo2: float | None = None
    lowest_moaas: int | None = None
    peak_cadss: int | None = None
    side_effects: tuple[str, ...] = ()
    saes: int = 0
    scales: Mapping[str, int] = field(default_factory=dict)
    slot: Slot | None = None
    label_note: str = ""
    ended: str = ""  # discharged | cancelled | ended | (open)


@dataclass(frozen=True, slots=True)
class CourseView:
    course: CourseState
    rows: tuple[CourseSessionRow, ...]
    slots: tuple[Slot, ...]
    precautions: tuple[str, ...]

    def trend(self, scale: str) -> list[tuple[int, int]]:
        """(session number, score) for each session that rated ``scale``."""
        return [(r.number, r.scales[scale]) for r in self.rows if scale in r.scales]

    def series(self, what: str) -> list[tuple[int, float]]:
        """(session number, value) for 'peak_sys', 'rise_sys', 'lowest_spo2', 'peak_cadss'."""
        out: list[tuple[int, float]] = []
        for r in self.rows:
            v: float | None = None
            if what == "peak_sys" and r.peak_bp:
                v = r.peak_bp[0]
            elif what == "rise_sys" and r.rise:
                v = r.rise[0]
            elif what == "lowest_spo2":
                v = r.lowest_spo2
            elif what == "peak_cadss" and r.peak_cadss is not None:
                v = float(r.peak_cadss)
            if v is not None:
                out.append((r.number, v))
        return out


def _dose(s: SessionState) -> tuple[str, float | None]:
    t = s.plan.treatment
    if t is Treatment.ESKETAMINE:
        mg = sum(d.mg for d in s.devices)
        return f"{mg:g} mg nasal ×{len(s.devices)}", mg or None
    if t is Treatment.IV_KETAMINE and s.infusion is not None:
        mg = s.infusion.given_mg if s.infusion.given_mg is not None else s.infusion.planned_mg
        return f"{mg:g} mg IV ({s.infusion.mg_per_kg:g} mg/kg)", mg
    if s.administration is not None:
        a = s.administration
        per = f" ({a.mg_per_kg:g} mg/kg)" if a.mg_per_kg else ""
        return f"{a.given_mg:g} mg {a.route.upper() if a.route == 'im' else a.route}{per}", (
            a.given_mg
        )
    return "—", None


def _ended(s: SessionState) -> str:
    if s.discharge is not None:
        return "discharged"
    if s.cancelled is not None:
        return "cancelled"
    if s.closed is not None:
        return "ended"
    return "open"


def course_view(
    course: CourseState,
    sessions: Sequence[SessionState],
    extremes: Mapping[int, Extremes],
    today: date,
) -> CourseView:
    """The view of ``course`` with its ``sessions`` (the patient's, oldest first; those before
    the course's start are left out) and each session's vital extremes."""
    mine = [s for s in sessions if s.started.date() >= course.plan.start and s.cancelled is None]
    slots, _extra = schedule(course.plan, [(s.session_id, s.started.date()) for s in mine], today)
    by_session = {sl.session_id: sl for sl in slots if sl.session_id is not None}
    rows: list[CourseSessionRow] = []
    previous_esk: float | None = None
    esk_index = 0
    for n, s in enumerate(mine, start=1):
        dose, mg = _dose(s)
        ex = extremes.get(s.session_id, {})
        # manual vitals count too (they are readings as well)
        lows: dict[str, float] = {p: v[0] for p, v in ex.items()}
        highs: dict[str, float] = {p: v[1] for p, v in ex.items()}
        for mv in s.vitals:
            if mv.in_error or (s.first_dose is not None and mv.at < s.first_dose):
                continue
            for p, v in mv.values.items():
                lows[p] = min(lows.get(p, v), v)
                highs[p] = max(highs.get(p, v), v)
        peak = (highs["nibp_sys"], highs["nibp_dia"]) if "nibp_sys" in highs else None
        if peak is not None and "nibp_dia" not in highs:
            peak = None
        rise = None
        if peak is not None and s.baseline is not None:
            rise = (peak[0] - s.baseline[0], peak[1] - s.baseline[1])
        cadss = [o.score for o in s.live(EntryKind.CADSS) if o.score is not None]
        effects = s.live(EntryKind.SIDE_EFFECT)
        scales: dict[str, int] = {}
        for r in s.scales:
            if r.scale in TREND_SCALES:
                scales[r.scale] = r.total
        note = ""
        if s.plan.treatment is Treatment.ESKETAMINE and mg is not None:
            note = esketamine_dose_note(esk_index, mg, previous_esk)
            previous_esk, esk_index = mg, esk_index + 1
        rows.append(
            CourseSessionRow(
                number=n,
                session_id=s.session_id,
                day=s.started.date(),
                treatment=s.plan.treatment.value,
                dose=dose,
                dose_mg=mg,
                peak_bp=peak,
                rise=rise,
                lowest_spo2=lows.get("spo2"),
                lowest_moaas=s.lowest_moaas,
                peak_cadss=max(cadss) if cadss else None,
                side_effects=tuple(sorted({o.item for o in effects})),
                saes=sum(1 for o in effects if o.serious),
                scales=scales,
                slot=by_session.get(s.session_id),
                label_note=note,
                ended=_ended(s),
            )
        )
    sc = course.screening
    return CourseView(
        course,
        tuple(rows),
        tuple(slots),
        tuple(precaution_lines(sc)) if sc is not None else (),
    )
