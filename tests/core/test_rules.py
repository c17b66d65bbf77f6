"""The session core's clinical rules, without Qt or a database (issue: session core, 'Why')."""

from __future__ import annotations

import pytest

from ketamon.core import commands as c
from ketamon.core.session import Refused
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.record import EntryKind, fold
from ketamon.domain.session_rules import PrescriberDecision
from ketamon.domain.side_effects import BP_SYMPTOMS, suggested_side_effects
from tests.core.helpers import (
    ALEX,
    DOC,
    ESK,
    IV,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    SAM,
    Chair,
    make_chair,
    screening,
    start_and_dose,
)

NO_SYMPTOMS = {k: False for k, _ in BP_SYMPTOMS}
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}


def discharge_ready(chair: Chair) -> None:
    chair.clock.advance(minutes=121)
    chair.readings(nibp_sys=125, nibp_dia=80, hr=72, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))


def discharge(chair: Chair, **kw: object) -> c.Discharge:
    args: dict[str, object] = {
        "checklist": CHECKLIST,
        "ready_to_leave_min": 90,
        "password": PASSWORD,
    }
    args.update(kw)
    return c.Discharge(**args)  # type: ignore[arg-type]


def test_the_next_patient_at_a_chair_inherits_nothing() -> None:
    chair = make_chair()
    start_and_dose(chair)
    chair.clock.advance(minutes=30)
    chair.readings(nibp_sys=200, nibp_dia=120)  # high BP flags
    chair.do(c.RecordSymptomCheck({**NO_SYMPTOMS, "chest_pain": True}))
    assert chair.engine.worst() is not None
    discharge_ready(chair)
    chair.do(c.Acknowledge())
    chair.do(discharge(chair, override_reason="escalation handled", authoriser=DOC))
    assert chair.core.state is None
    assert chair.engine.active() == []
    out = chair.do(c.StartSession(SAM, ESK, confirmed=True))
    s = out.state
    assert s.patient.mrn == "MRN-2"
    assert s.alarms == {} and s.baseline is None and s.first_dose is None
    assert s.observations == () and s.symptom_checks == () and s.screening is None
    assert chair.engine.baseline == {} and chair.engine.first_dose is None


def test_start_needs_the_patient_confirmed_and_one_session_per_chair() -> None:
    chair = make_chair()
    with pytest.raises(Refused, match="Confirm that this is the patient"):
        chair.do(c.StartSession(ALEX, ESK))
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    with pytest.raises(Refused, match="already running"):
        chair.do(c.StartSession(SAM, ESK, confirmed=True))


def test_a_restart_keeps_the_baseline_and_flags_a_41_mmhg_rise() -> None:
    chair = make_chair()
    start_and_dose(chair, bp=(120, 80))
    sid = chair.core.state.session_id  # type: ignore[union-attr]
    # restart: a new engine and core over the same record
    again = make_chair(chair.repo, chair.clock)
    state = again.core.resume(sid)
    assert state.baseline == (120.0, 80.0)
    again.clock.advance(minutes=35)
    out = again.readings(nibp_sys=161, nibp_dia=85)
    assert out is not None
    assert "bp_rise_nibp_sys" in out.state.alarms


def test_restart_restores_screening_decision_acknowledgements_and_prompts() -> None:
    chair = make_chair()
    start_and_dose(chair, bp=(150, 94))
    chair.clock.advance(minutes=40)
    chair.readings(spo2=85)
    chair.do(c.Acknowledge("spo2_low"))
    chair.do(c.RecordMoaas(4))
    sid = chair.core.state.session_id  # type: ignore[union-attr]
    again = make_chair(chair.repo, chair.clock)
    s = again.core.resume(sid)
    assert s == chair.core.state
    assert s.decision is not None and s.decision.decision is PrescriberDecision.PROCEED
    assert s.screening is not None and s.screening.bp == (150.0, 94.0)
    assert s.alarms["spo2_low"].acknowledged
    assert [a.key for a in again.engine.active()] == [a.key for a in chair.engine.active()]
    assert again.engine.is_acknowledged("spo2_low")


def test_discharge_lists_every_unmet_criterion_and_needs_a_physician() -> None:
    chair = make_chair()
    start_and_dose(chair)
    chair.clock.advance(minutes=125)
    chair.readings(nibp_sys=150, nibp_dia=95, spo2=97, rr=14)
    chair.do(c.RecordMoaas(1))  # a high-priority flag, and MOAA/S not 5
    with pytest.raises(Refused) as err:
        chair.do(discharge(chair))
    text = " | ".join(err.value.reasons)
    assert "MOAA/S is 1" in text
    assert "High-priority flag" in text
    assert "discharge limit" in text
    assert "symptom questions" in text  # the high BP asked them: they come first
    assert "physician" in text
    chair.do(c.RecordSymptomCheck(NO_SYMPTOMS))
    # a nurse's reason alone is not enough
    with pytest.raises(Refused, match="physician"):
        chair.do(discharge(chair, override_reason="family insists"))
    # the discharging nurse signs with her own password
    with pytest.raises(Refused, match="password"):
        chair.do(discharge(chair, override_reason="ok", authoriser=DOC, password="nope"))
    out = chair.do(discharge(chair, override_reason="reviewed at bedside", authoriser=DOC))
    d = out.state.discharge
    assert d is not None and d.authorised_by == PHYSICIAN.full_name
    assert any("MOAA/S" in u for u in d.unmet)
    assert out.state.alarms == {}


def test_checklist_and_ready_to_leave_cannot_be_overridden() -> None:
    chair = make_chair()
    start_and_dose(chair)
    discharge_ready(chair)
    with pytest.raises(Refused, match="Steady gait"):
        chair.do(discharge(chair, checklist={}, override_reason="x", authoriser=DOC))
    with pytest.raises(Refused, match="ready to leave"):
        chair.do(discharge(chair, ready_to_leave_min=None))
    out = chair.do(discharge(chair))
    assert out.state.discharge is not None and out.state.discharge.unmet == ()


def test_discharge_before_120_minutes_needs_a_physician_and_reason() -> None:
    chair = make_chair()
    start_and_dose(chair)
    chair.clock.advance(minutes=60)
    chair.readings(nibp_sys=120, nibp_dia=80, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))
    with pytest.raises(Refused, match="Only 65 of 120 min"):
        chair.do(discharge(chair))
    out = chair.do(discharge(chair, override_reason="transfer to ED", authoriser=DOC))
    assert out.state.discharge is not None
    assert out.state.discharge.early_reason == "transfer to ED"


def test_saved_predose_answers_are_corrected_with_a_reason_and_delay_can_become_proceed() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    out = chair.do(screening((152, 94)))
    sid = out.entries[0].id
    assert out.state.screening is not None and out.state.screening.above_advisory
    chair.do(c.PrescriberDecide(PrescriberDecision.DELAY), PHYSICIAN)
    with pytest.raises(Refused, match="delay"):
        chair.do(c.LogDevice("L1"))
    with pytest.raises(Refused, match="reason"):
        chair.do(c.Correct(sid, {"fasting": False}, ""))
    chair.do(c.Correct(sid, {"hr": 72.0}, "misread"))
    chair.do(c.PrescriberDecide(PrescriberDecision.PROCEED, authoriser=DOC))
    out = chair.do(c.LogDevice("L1"))
    assert out.state.first_dose is not None
    assert out.state.screening is not None and out.state.screening.hr == 72.0
    assert [d.decision for d in out.state.decisions] == [
        PrescriberDecision.DELAY,
        PrescriberDecision.PROCEED,
    ]


def test_a_new_screening_needs_a_new_decision() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    chair.do(screening((152, 94)))
    chair.do(c.PrescriberDecide(PrescriberDecision.PROCEED), PHYSICIAN)
    chair.clock.advance(minutes=1)
    chair.do(screening((155, 96)))
    with pytest.raises(Refused, match="prescriber"):
        chair.do(c.LogDevice("L1"))


def test_rems_enrolment_confirmed_at_screening_is_kept_on_the_patient() -> None:
    chair = make_chair()
    p = ALEX.__class__(None, "MRN-9", "New", "Patient", rems_enrolled=None)
    chair.do(c.StartSession(p, ESK, confirmed=True))
    out = chair.do(screening())
    assert out.state.patient.rems_enrolled is True


def test_a_session_started_in_error_can_be_cancelled() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    with pytest.raises(Refused, match="reason"):
        chair.do(c.Cancel(""))
    out = chair.do(c.Cancel("wrong patient picked"))
    assert out.state.cancelled is not None and chair.core.state is None
    # after a dose only a physician may
    start_and_dose(chair, SAM)
    with pytest.raises(Refused, match="physician"):
        chair.do(c.Cancel("oops"))
    out = chair.do(c.Cancel("entered in error", authoriser=DOC))
    assert out.state.cancelled is not None and out.state.cancelled.by == PHYSICIAN.full_name
    # and stays in the record
    assert fold(chair.repo.load(out.state.session_id)) == out.state


def test_only_high_bp_after_dosing_asks_for_symptoms_and_suggests_bp_increased() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    out = chair.readings(nibp_sys=165, nibp_dia=85)  # high before dosing
    assert out is not None and not out.state.symptom_check_pending
    assert suggested_side_effects(set(out.state.flagged_families)) == []
    chair.readings(nibp_sys=120, nibp_dia=80, hr=70)
    chair.do(screening((120, 80)))
    chair.do(c.LogDevice("L"))
    chair.clock.advance(minutes=10)
    out = chair.readings(nibp_sys=85, nibp_dia=45, hr=45)  # low BP and HR
    assert out is not None and not out.state.symptom_check_pending
    assert suggested_side_effects(set(out.state.flagged_families)) == []
    chair.clock.advance(minutes=10)
    out = chair.readings(nibp_sys=170, nibp_dia=85, hr=130)
    assert out is not None and out.state.symptom_check_pending
    assert set(suggested_side_effects(set(out.state.flagged_families))) == {
        "bp_increased",
        "tachycardia",
    }
    chair.do(c.RecordSymptomCheck(NO_SYMPTOMS))
    assert not chair.core.state.symptom_check_pending  # type: ignore[union-attr]
    chair.clock.advance(minutes=10)
    chair.readings(nibp_sys=130, nibp_dia=80)  # the episode ends
    chair.clock.advance(minutes=10)
    out = chair.readings(nibp_sys=175, nibp_dia=85)  # a new episode asks again
    assert out is not None and out.state.symptom_check_pending


def test_a_yes_escalates_and_a_physician_resets_it_once_documented() -> None:
    chair = make_chair()
    start_and_dose(chair)
    chair.clock.advance(minutes=20)
    chair.readings(nibp_sys=190, nibp_dia=100)
    out = chair.do(c.RecordSymptomCheck({**NO_SYMPTOMS, "severe_headache": True}))
    assert out.state.escalated_at is not None
    assert out.state.alarms["hypertensive_emergency"].priority == "high"
    with pytest.raises(Refused, match="physician"):
        chair.do(c.ResetEmergency("called 911"))
    with pytest.raises(Refused, match="Document"):
        chair.do(c.ResetEmergency("", authoriser=DOC))
    out = chair.do(c.ResetEmergency("labetalol given, BP settling", authoriser=DOC))
    assert "hypertensive_emergency" not in out.state.alarms
    assert out.state.escalation_reset_at is not None


def test_iv_hold_limits_are_evaluated_during_the_infusion_and_the_given_dose_is_stored() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, IV, confirmed=True))
    chair.readings(nibp_sys=120, nibp_dia=80, hr=70)
    chair.do(screening())
    out = chair.do(c.StartInfusion())
    assert out.state.infusion is not None and out.state.infusion.planned_mg == 35.0
    chair.clock.advance(minutes=5)
    out = chair.readings(nibp_sys=182, nibp_dia=90, hr=112)
    assert out is not None
    assert {"iv_hold_sys", "iv_hold_hr"} <= set(out.state.alarms)
    chair.clock.advance(minutes=5)
    with pytest.raises(Refused, match="reason"):
        chair.do(c.StopInfusion())
    out = chair.do(c.StopInfusion("BP at hold limit"))
    inf = out.state.infusion
    assert inf is not None and inf.given_mg == pytest.approx(8.8, abs=0.1)  # 0.875 mg/min x 10


def test_rems_answers_follow_the_record() -> None:
    from ketamon.domain.discharge import rems_answers

    chair = make_chair()
    start_and_dose(chair, bp=(152, 94))
    s = chair.core.state
    assert s is not None
    ans = rems_answers(s, vitals_ok_end=True, pulse_oximetry_used=True)
    assert ans["vitals_ok_before"] is False
    assert ans["serious_adverse_event"] is False
    chair.clock.advance(minutes=30)
    chair.do(c.RecordMoaas(1))
    ans = rems_answers(chair.core.state, vitals_ok_end=True, pulse_oximetry_used=True)  # type: ignore[arg-type]
    assert ans["serious_adverse_event"] is True and ans["sedation"] is True

    other = make_chair()
    start_and_dose(other)
    other.clock.advance(minutes=20)
    other.readings(spo2=78)
    ans = rems_answers(other.core.state, vitals_ok_end=True, pulse_oximetry_used=True)  # type: ignore[arg-type]
    assert ans["respiratory_depression"] is True and ans["serious_adverse_event"] is True

    third = make_chair()
    start_and_dose(third)
    third.clock.advance(minutes=20)
    third.readings(nibp_sys=190, nibp_dia=100)
    third.do(c.RecordSymptomCheck({**NO_SYMPTOMS, "chest_pain": True}))
    ans = rems_answers(third.core.state, vitals_ok_end=True, pulse_oximetry_used=True)  # type: ignore[arg-type]
    assert ans["serious_adverse_event"] is True


def test_corrections_keep_old_and_new_and_entered_in_error_removes_the_flag() -> None:
    chair = make_chair()
    start_and_dose(chair)
    out = chair.do(c.RecordMoaas(2))
    eid = out.entries[0].id
    assert chair.engine.worst() is not None
    out = chair.do(c.Correct(eid, {"score": 4}, "scored the wrong patient"))
    corr = out.state.corrections[-1]
    assert corr.old == {"score": 2} and corr.changes == {"score": 4}
    assert all(a.key != "moaas" for a in chair.engine.active())
    out = chair.do(c.Correct(eid, {}, "wrong chair", in_error=True))
    assert out.state.live(EntryKind.MOAAS) == []
    with pytest.raises(Refused):
        chair.do(c.Correct(eid, {"score": 3}, "again"))


def test_limits_are_a_physicians_and_the_change_is_in_force() -> None:
    chair = make_chair()
    start_and_dose(chair)
    with pytest.raises(Refused, match="physician"):
        chair.do(c.ChangeLimit("spo2", 88, None, "COPD baseline"))
    chair.do(c.ChangeLimit("spo2", 88, None, "COPD baseline", authoriser=DOC))
    assert chair.engine.profile.limits_for("spo2")[0].low == 88
    again = make_chair(chair.repo, chair.clock)
    again.core.resume(chair.core.state.session_id)  # type: ignore[union-attr]
    assert again.engine.profile.limits_for("spo2")[0].low == 88


def test_a_refused_command_records_nothing() -> None:
    chair = make_chair()
    start_and_dose(chair)
    sid = chair.core.state.session_id  # type: ignore[union-attr]
    before = len(chair.repo.load(sid))
    for cmd in (c.RecordMoaas(7), c.LogDevice("X"), c.AddNote("  "), c.RecordVitals({"hr": 999})):
        with pytest.raises(Refused):
            chair.do(cmd)
    assert len(chair.repo.load(sid)) == before


def test_a_storage_failure_leaves_the_state_as_the_record_has_it() -> None:
    chair = make_chair()
    start_and_dose(chair)
    state = chair.core.state
    chair.repo.fail_next = OSError("disk full")  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        chair.do(c.AddNote("lost?"))
    assert chair.core.state == state == fold(chair.repo.load(state.session_id))  # type: ignore[union-attr]


def test_manual_vitals_are_checked() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    with pytest.raises(Refused, match="below systolic"):
        chair.do(c.RecordVitals({"nibp_sys": 80, "nibp_dia": 90}))
    with pytest.raises(Refused, match="outside"):
        chair.do(c.RecordVitals({"hr": float("nan")}))
    out = chair.do(c.RecordVitals({"nibp_sys": 130, "nibp_dia": 80}))
    assert out.manual_values == {"nibp_sys": 130.0, "nibp_dia": 80.0}


def test_engine_stays_clean_without_a_session() -> None:
    assert AlarmEngine  # the engine is the real one in these tests
    assert NURSE.role.value == "nurse"


def test_the_site_profile_in_force_is_recorded_with_the_session() -> None:
    from ketamon.core.session import CoreSettings
    from ketamon.site_settings import load_site_profile

    site = load_site_profile(None)
    chair = make_chair()
    chair.core.settings = CoreSettings(site={"name": site.name, **site.settings()})
    out = chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    recorded = chair.repo.load(out.state.session_id)[0].data["site"]
    assert recorded["name"] == site.name
    assert recorded["min_observation_min"] == 120 and recorded["latch_high"] is True
    assert recorded["bp40_window_min"] == [35, 45]
