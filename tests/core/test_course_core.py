"""Issue 15 through the session and course cores: the screening hard stop and its override, an
IM and a sublingual session to discharge (clock start, dose maths, minimum observation per
route), the PHQ-9 item-9 flag and its action, a witnessed waste needing a second user, and the
therapist's notes kept apart."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.course import (
    CourseCore,
    CourseRefused,
    MemoryCourses,
    OpenCourse,
    OverrideContraindication,
    ScreenPatient,
)
from ketamon.core.desk import SessionDesk
from ketamon.core.dose_report import dose_lines
from ketamon.core.memory import MemoryRepository
from ketamon.core.read_models import record_lines, therapist_lines
from ketamon.core.session import ChairCore, CoreSettings, Refused
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.course import CoursePlan
from ketamon.domain.dosing import Supply, dose_report
from ketamon.domain.outcome_scales import PHQ9_FLAG_KEY
from ketamon.domain.record import Plan
from ketamon.domain.roles import Actor, Role
from ketamon.domain.screening import ITEMS, Answer, ItemAnswer
from ketamon.domain.session_rules import Treatment
from tests.core.helpers import (
    ALEX,
    DOC,
    IM,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    SL,
    THERAPIST,
    Chair,
    Clock,
    Passwords,
    profile,
    screening,
)

THERA = THERAPIST
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}
PATIENT = replace(ALEX, id=7)
VIAL = Supply("Ketamine HCl 50 mg/mL", 50.0, "K123", "2027-06-30")
TROCHE = Supply("Ketamine troche 100 mg", 100.0, "T9", "2027-01-31")


def make(
    clock: Clock | None = None, *, required: bool = False, min_obs: dict[str, float] | None = None
) -> tuple[Chair, CourseCore]:
    clock = clock or Clock()
    prof = profile()
    engine = AlarmEngine(prof)
    courses = CourseCore(MemoryCourses(), Passwords(), clock, screening_required=required)
    settings = CoreSettings(min_observation_by_treatment=min_obs or {})
    repo = MemoryRepository()
    core = ChairCore(
        "Chair 1",
        repo,
        Passwords(),
        prof,
        clock,
        alarms=EngineAlarms(engine, clock),
        settings=settings,
        courses=courses,
    )
    return Chair(core, engine, clock, repo), courses


def open_course(courses: CourseCore, treatment: str = "im_ketamine") -> int:
    plan = CoursePlan("Treatment-resistant depression", treatment, date(2026, 11, 30))
    return courses.execute(OpenCourse(7, "MRN-1", plan), NURSE).course_id


def answers(**changes: ItemAnswer) -> dict[str, ItemAnswer]:
    out = {k: ItemAnswer(Answer.NO) for k in ITEMS}
    out.update(changes)
    return out


def predose(chair: Chair, plan: Plan) -> None:
    chair.do(c.StartSession(PATIENT, plan, confirmed=True))
    chair.readings(nibp_sys=120, nibp_dia=80, hr=70, spo2=98, rr=14)
    chair.do(screening())


def to_discharge(chair: Chair, minutes: float) -> None:
    chair.clock.advance(minutes=minutes)
    chair.readings(nibp_sys=122, nibp_dia=80, hr=72, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))


def discharge(**kw: object) -> c.Discharge:
    args: dict[str, object] = {"checklist": CHECKLIST, "ready_to_leave_min": 90}
    args["password"] = PASSWORD
    args.update(kw)
    return c.Discharge(**args)  # type: ignore[arg-type]


# ---- screening ------------------------------------------------------------------------------


def test_a_contraindication_blocks_dosing_until_a_physician_overrides_it() -> None:
    chair, courses = make()
    cid = open_course(courses)
    with pytest.raises(CourseRefused, match="needs a physician"):
        courses.execute(ScreenPatient(cid, answers()), NURSE)
    with pytest.raises(CourseRefused, match="Only"):
        courses.execute(ScreenPatient(cid, answers()), THERAPIST)
    found = ItemAnswer(Answer.YES, "clipped AVM 2019")
    # a nurse records the prescriber's answers on their sign-in: the prescriber is the author
    screened = courses.execute(
        ScreenPatient(cid, answers(arteriovenous_malformation=found), DOC), NURSE
    )
    assert screened.screening is not None and screened.screening.by == "Dr Paul Physician"
    predose(chair, IM)
    with pytest.raises(Refused) as refused:
        chair.do(c.AdministerDose(VIAL, 50.0, "deltoid_left"))
    assert any("Arteriovenous malformation (yes)" in r for r in refused.value.reasons)
    # a nurse cannot override alone, nor with a nurse's sign-in; a physician's reason is needed
    with pytest.raises(CourseRefused, match="needs a physician"):
        courses.execute(OverrideContraindication(cid, "neurosurgeon cleared"), NURSE)
    with pytest.raises(CourseRefused, match="only a physician may do this"):
        courses.execute(OverrideContraindication(cid, "x", c.Credentials("nora", PASSWORD)), NURSE)
    with pytest.raises(CourseRefused, match="needs a reason"):
        courses.execute(OverrideContraindication(cid, " "), PHYSICIAN)
    # the chair's UI reads the gate as last read on the command thread, never the database
    assert any("Arteriovenous" in b for b in chair.core.gate.blockers)
    course = courses.execute(OverrideContraindication(cid, "neurosurgeon cleared", DOC), NURSE)
    assert chair.core.gate.blockers != ()  # not read again yet
    assert chair.core.refresh_gate().blockers == ()
    assert course.overrides[0].by == "Dr Paul Physician"
    assert course.overrides[0].items == ("arteriovenous_malformation",)
    out = chair.do(c.AdministerDose(VIAL, 35.0, "deltoid_left"))
    dose = out.entries[0]
    assert dose.data["course_id"] == cid and dose.data["screening_id"] is not None


def test_no_course_blocks_only_when_the_site_requires_screening() -> None:
    chair, _ = make(required=True)
    predose(chair, IM)
    with pytest.raises(Refused, match="Open a treatment course"):
        chair.do(c.AdministerDose(VIAL, 35.0, "deltoid_left"))
    free, _ = make()
    predose(free, IM)
    free.do(c.AdministerDose(VIAL, 35.0, "deltoid_left"))


def test_precautions_show_with_the_gate_and_the_screening_expires() -> None:
    chair, courses = make()
    cid = open_course(courses)
    courses.execute(
        ScreenPatient(cid, answers(cystitis=ItemAnswer(Answer.YES, "frequency"))), PHYSICIAN
    )
    gate = courses.gate(7, Treatment.IM_KETAMINE, chair.clock.now)
    assert gate.blockers == () and gate.precautions == (
        "Cystitis / bladder symptoms (yes: frequency)",
    )
    chair.clock.advance(minutes=90 * 24 * 60)
    assert (
        "screen the patient again"
        in courses.gate(7, Treatment.IM_KETAMINE, chair.clock.now).blockers[0]
    )


# ---- routes ----------------------------------------------------------------------------------


def test_an_im_session_runs_to_discharge_with_its_route_minimum() -> None:
    chair, courses = make(min_obs={"im_ketamine": 150.0})
    cid = open_course(courses)
    courses.execute(ScreenPatient(cid, answers()), PHYSICIAN)
    predose(chair, IM)
    chair.clock.advance(minutes=3)
    with pytest.raises(Refused) as r:
        chair.do(c.AdministerDose(VIAL, 30.0, "nowhere"))
    assert r.value.reasons == [
        "Choose the injection site",
        "Given (35 mg) cannot be more than drawn (30 mg)",
    ]
    out = chair.do(c.AdministerDose(VIAL, 50.0, "deltoid_left"))
    s = out.state
    assert s.first_dose == chair.clock.now  # the clock starts at the administration
    a = s.administration
    assert a is not None and (a.given_mg, a.mg_per_kg, a.weight_kg) == (35.0, 0.5, 70.0)
    assert s.dosing_complete and s.unaccounted_mg == 15.0
    with pytest.raises(Refused, match="already been given"):
        chair.do(c.AdministerDose(VIAL, 50.0, "deltoid_left"))
    to_discharge(chair, 125)
    with pytest.raises(Refused) as r:
        chair.do(discharge())
    texts = " | ".join(r.value.reasons)
    assert "of 150 min observed" in texts  # the route's own minimum
    assert "15 mg of Ketamine HCl 50 mg/mL lot K123 drawn but not given" in texts
    chair.do(
        c.RecordWaste(
            VIAL.product, "K123", 15.0, "rest of the vial", c.Credentials("nora", PASSWORD)
        )
    )
    to_discharge(chair, 26)
    out = chair.do(discharge())
    assert out.state.discharge is not None and out.state.discharge.total_min == 151


def test_a_sublingual_session_runs_to_discharge() -> None:
    chair, _ = make()
    with pytest.raises(Refused, match="form"):
        chair.do(c.StartSession(PATIENT, replace(SL, oral_form="enema"), confirmed=True))
    predose(chair, SL)
    out = chair.do(c.AdministerDose(TROCHE, 200.0))
    a = out.state.administration
    assert a is not None and (a.route, a.given_mg, a.form) == (
        "sublingual",
        200.0,
        "sublingual_troche",
    )
    assert out.state.unaccounted_mg == 0.0
    to_discharge(chair, 121)
    assert chair.do(discharge()).state.discharge is not None
    words = [ln.text for ln in record_lines(chair.core.entries)]
    assert any(t.startswith("sublingual 200 mg, Sublingual troche") for t in words)


def test_an_expired_lot_is_refused() -> None:
    chair, _ = make()
    predose(chair, SL)
    with pytest.raises(Refused, match="expired on 2026-01-31"):
        chair.do(c.AdministerDose(replace(TROCHE, expiry="2026-01-31"), 200.0))


# ---- waste -----------------------------------------------------------------------------------


def test_a_witnessed_waste_needs_a_second_user() -> None:
    chair, _ = make()
    predose(chair, IM)
    chair.do(c.AdministerDose(VIAL, 50.0, "deltoid_left"))
    waste = c.RecordWaste(VIAL.product, "K123", 15.0, "rest of the vial")
    with pytest.raises(Refused, match="second user must witness"):
        chair.do(waste)
    with pytest.raises(Refused, match="not the one recording"):
        chair.do(replace(waste, witness=c.Credentials("nina", PASSWORD)))
    with pytest.raises(Refused, match="The witness: wrong"):
        chair.do(replace(waste, witness=c.Credentials("nora", "nope")))
    with pytest.raises(Refused, match="nurse or a physician"):
        chair.do(replace(waste, witness=c.Credentials("tess", PASSWORD)))
    with pytest.raises(Refused, match="Only 15 mg"):
        chair.do(replace(waste, mg=20.0, witness=DOC))
    with pytest.raises(Refused, match="lot K999 was not drawn"):
        chair.do(replace(waste, lot="K999", witness=DOC))
    out = chair.do(replace(waste, witness=DOC))
    e = out.entries[0]
    assert e.authorised_by == "Dr Paul Physician" and e.author == "Nina Nurse"
    assert out.state.unaccounted_mg == 0.0


def test_a_partly_used_device_is_disposed_witnessed_and_the_report_totals() -> None:
    chair, _ = make()
    chair.do(c.StartSession(PATIENT, Plan(Treatment.ESKETAMINE, dose_mg=56.0), confirmed=True))
    chair.readings(nibp_sys=120, nibp_dia=80, hr=70, spo2=98, rr=14)
    chair.do(screening())
    chair.do(c.LogDevice("E1", "2027-03-31"))
    chair.clock.advance(minutes=5)
    chair.do(c.LogDevice("E1"))
    from ketamon.domain.dosing import ESKETAMINE_PRODUCT

    with pytest.raises(Refused, match="Name the device"):
        chair.do(c.RecordWaste(ESKETAMINE_PRODUCT, "E1", 14.0, "patient sneezed", DOC))
    chair.do(c.RecordWaste(ESKETAMINE_PRODUCT, "E1", 14.0, "patient sneezed", DOC, 2))
    rows = dose_report(dose_lines(chair.core.entries), chair.clock.now.astimezone().date())
    assert len(rows) == 1
    r = rows[0]
    assert (r.devices, r.administrations, r.given_mg, r.wasted_mg, r.accounted_mg) == (
        2,
        2,
        42.0,
        14.0,
        56.0,
    )


# ---- scales ----------------------------------------------------------------------------------


def test_phq9_item9_raises_a_flag_the_clinician_must_act_on() -> None:
    chair, _ = make()
    predose(chair, SL)
    items = {i: 1 for i in range(1, 10)}
    out = chair.do(c.RecordScale("phq9", items))
    assert out.state.suicidality_pending
    assert PHQ9_FLAG_KEY in out.state.alarms
    assert out.state.alarms[PHQ9_FLAG_KEY].priority == "high"
    assert out.state.latest_scale("phq9") is not None
    assert out.state.latest_scale("phq9").band == "mild"  # type: ignore[union-attr]
    chair.do(c.AdministerDose(TROCHE, 200.0))
    to_discharge(chair, 121)
    chair.do(c.Acknowledge())  # silencing is not the action
    with pytest.raises(Refused, match="record the action taken"):
        chair.do(discharge())
    with pytest.raises(Refused, match="Record the action"):
        chair.do(c.RecordSuicidalityAction(""))
    out = chair.do(c.RecordSuicidalityAction("C-SSRS screen negative; prescriber informed"))
    assert not out.state.suicidality_pending and PHQ9_FLAG_KEY not in out.state.alarms
    assert out.state.suicidality_actions[0].by == "Nina Nurse"
    with pytest.raises(Refused, match="No PHQ-9"):
        chair.do(c.RecordSuicidalityAction("again"))
    chair.do(discharge())


def test_scales_refuse_bad_ratings_and_rass_agitation_flags() -> None:
    chair, _ = make()
    predose(chair, SL)
    with pytest.raises(Refused, match="Unknown scale"):
        chair.do(c.RecordScale("hamd", {1: 1}))
    with pytest.raises(Refused, match="CGI-S item 1: score must be 1-7"):
        chair.do(c.RecordScale("cgi_s", {1: 0}))
    chair.do(c.RecordScale("cgi_s", {1: 5}))
    chair.do(c.RecordScale("bprs_plus", {1: 1, 2: 1, 3: 2, 4: 1}))
    chair.do(c.RecordScale("madrs", {i: 2 for i in range(1, 11)}))
    chair.do(c.AdministerDose(TROCHE, 200.0))
    out = chair.do(c.RecordRass(2))
    assert out.state.alarms["rass"].priority == "medium"
    assert "agitation" in out.state.alarms["rass"].message
    out = chair.do(c.RecordRass(-4))
    assert out.state.alarms["rass"].priority == "high"
    assert [r.scale for r in out.state.scales] == ["cgi_s", "bprs_plus", "madrs"]


# ---- therapist --------------------------------------------------------------------------------


def test_the_therapist_writes_notes_on_an_assigned_session_kept_apart() -> None:
    chair, _ = make()
    predose(chair, SL)
    with pytest.raises(Refused, match="assigned to"):
        chair.do(c.AddTherapistNote("hello"), THERA)
    with pytest.raises(Refused, match="not a therapist"):
        chair.do(c.AssignTherapist(c.Credentials("nora", PASSWORD)))
    with pytest.raises(Refused, match="Only"):
        chair.do(c.AssignTherapist(c.Credentials("tess", PASSWORD)), THERA)
    chair.do(c.AssignTherapist(c.Credentials("tess", PASSWORD)))
    with pytest.raises(Refused, match="already assigned"):
        chair.do(c.AssignTherapist(c.Credentials("tess", PASSWORD)))
    with pytest.raises(Refused, match="dose"):
        chair.do(c.AdministerDose(TROCHE, 200.0), THERA)  # a therapist does not dose
    chair.clock.advance(minutes=10)
    out = chair.do(c.AddTherapistNote("Intention set: grief work"), THERA)
    assert out.state.therapist_notes[0].by == "Tess Therapist"
    assert out.state.therapist_notes[0].at == chair.clock.now
    nursing = [ln.text for ln in record_lines(chair.core.entries)]
    assert "Intention set: grief work" not in nursing
    assert [ln.text for ln in therapist_lines(chair.core.entries)] == ["Intention set: grief work"]
    # the review desk lets the therapist read this session, not another
    desk = SessionDesk(chair.repo, Passwords(), chair.clock)
    sid = out.state.session_id
    assert desk.open(sid, THERA).state.session_id == sid
    other = Actor(16, "theo", "Theo Therapist", Role.THERAPIST)
    with pytest.raises(Refused, match="assigned to"):
        desk.open(sid, other)
    assert NURSE.id != THERA.id
