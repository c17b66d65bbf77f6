"""The treatment course at a real chair (issue 15), driven as a nurse would: a new patient on
IM ketamine is screened (a contraindication blocks the dose until a physician overrides it),
dosed with the vial's lot and expiry, the rest of the vial wasted with a second user as
witness, a PHQ-9 with item 9 above 0 flags until the action is recorded, a therapist joins and
writes a note, and the session runs to discharge."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketamon.domain.screening import Answer
from ketamon.domain.session_rules import Treatment
from ketamon.storage.models import DoseWaste, TreatmentCourse
from ketamon.storage.users import acting_as, create_user, system_user_id
from ketamon.ui.course_panels import CoursePanel
from ketamon.ui.panels import StartSessionPanel
from tests.ui.conftest import Rig


def test_an_im_session_with_its_course_at_the_chair(rig: Rig, qtbot: Any) -> None:
    view = rig.view(1)
    model = view.model
    rig.show(view)
    qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)
    with Session(rig.engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        create_user(
            s,
            username="tess",
            full_name="Tess Therapist",
            role="therapist",
            password="a long enough secret",
        )

    # -- a new patient on IM ketamine 0.5 mg/kg
    start = rig.open(view, "start")
    assert isinstance(start, StartSessionPanel)
    for field, text in ((start.mrn, "IM-1"), (start.first, "Ira"), (start.last, "Muscle")):
        qtbot.keyClicks(field, text)
    start.weight.setValue(70)
    start.im.setChecked(True)
    start.im_mgkg.setValue(0.5)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    assert model.state is not None and model.state.plan.treatment is Treatment.IM_KETAMINE

    # -- the course: plan and first-visit screening, a contraindication found
    course = rig.open(view, "course")
    assert isinstance(course, CoursePanel)
    scr = course.screening
    assert scr.plan_box.isVisibleTo(course) and "No course yet" in scr.gate_text.text()
    for combo, _note in scr.answers.values():
        combo.setCurrentIndex(combo.findData(Answer.NO))
    combo, note = scr.answers["arteriovenous_malformation"]
    combo.setCurrentIndex(combo.findData(Answer.YES))
    assert "needs a physician" in rig.save(course)  # the demo nurse is signed in
    qtbot.keyClicks(scr.prescriber, "doctor")
    qtbot.keyClicks(scr.prescriber_password, "demo")
    assert "needs a note" in rig.save(course)
    qtbot.keyClicks(note, "clipped 2019")
    heart, heart_note = scr.answers["heart_disease"]
    heart.setCurrentIndex(heart.findData(Answer.YES))
    qtbot.keyClicks(heart_note, "stable angina")
    qtbot.keyClicks(scr.prescriber_password, "demo")  # asked again at every save
    assert rig.save(course) == ""
    gate = model.core.gate
    assert gate.course is not None and any("Arteriovenous" in b for b in gate.blockers)
    assert gate.precautions == ("Heart disease (yes: stable angina)",)

    # -- pre-dose vitals by hand, then the dose is blocked by the contraindication
    pre = rig.open(view, "screening")
    pre.sys.setValue(124)
    pre.dia.setValue(78)
    pre.hr.setValue(72)
    pre.fasting.setChecked(True)
    pre.escort.setChecked(True)
    assert rig.save(pre) == ""
    dose = rig.open(view, "dose")
    assert dose.administer.isVisibleTo(dose)
    assert "0.5 mg/kg × 70 kg = 35 mg" in dose.administer.planned.text()
    assert "Arteriovenous malformation" in dose.blockers.text()
    assert "⚠ Precaution: Heart disease (yes: stable angina)" in dose.blockers.text()
    f = dose.administer
    qtbot.keyClicks(f.product, "Ketamine HCl 50 mg/mL")
    f.concentration.setValue(50)
    qtbot.keyClicks(f.lot, "K123")
    qtbot.keyClicks(f.expiry, "2099-06-30")
    f.drawn.setValue(50)
    f.site.setCurrentIndex(f.site.findData("deltoid_left"))
    assert "Arteriovenous malformation" in rig.save(dose)
    rig.click(dose.cancel_button)

    # -- a physician overrides it (signing in at the nurse's station), then the dose
    course = rig.open(view, "course")
    qtbot.keyClicks(scr.reason, "neurosurgeon: treated AVM, cleared")
    qtbot.keyClicks(scr.doctor, "doctor")
    qtbot.keyClicks(scr.doctor_password, "demo")
    assert "✖ Contraindication: Arteriovenous malformation (yes)" in scr.gate_text.text()
    rig.shot("course-0-contraindication-blocks-dosing")
    rig.click(scr.override_button)
    assert course.saving is not None
    course.saving.wait()
    rig.settle()
    assert course.error.text() == "" and model.core.gate.blockers == ()
    rig.click(course.cancel_button)
    dose = rig.open(view, "dose")
    assert rig.save(dose) == ""
    a = model.state.administration
    assert a is not None and (a.given_mg, a.lot, a.site) == (35.0, "K123", "deltoid_left")
    assert model.state.first_dose == a.at

    # -- the rest of the vial, wasted with a witness
    course = rig.open(view, "course")
    course.tabs.setCurrentWidget(course.waste)
    w = course.waste
    assert w.mg.value() == 15 and w.lot.text() == "K123"
    qtbot.keyClicks(w.reason, "rest of the vial")
    qtbot.keyClicks(w.witness, "nurse")
    qtbot.keyClicks(w.password, "demo")
    assert "second user" in rig.save(course)
    w.witness.clear()
    qtbot.keyClicks(w.witness, "doctor")
    qtbot.keyClicks(w.password, "demo")
    assert rig.save(course) == ""
    assert model.state.unaccounted_mg == 0.0

    # -- PHQ-9 with item 9 above 0: a flag until the action is recorded
    course = rig.open(view, "course")
    course.tabs.setCurrentWidget(course.scales)
    sc = course.scales
    assert sc.scale.currentData() == "phq9"
    for n, group in sc.groups.items():
        group.button(10 + (1 if n == 9 else 2)).click()
    assert "Total so far: 17 (9 of 9)" in sc.total.text()
    rig.shot("course-1-phq9-at-the-chair")
    assert rig.save(course) == ""
    assert model.state.suicidality_pending
    assert any(a.key == "phq9_item9" for a in model.active_alarms())
    course = rig.open(view, "course")
    course.tabs.setCurrentWidget(course.scales)
    assert sc.action_box.isVisibleTo(course)
    qtbot.keyClicks(sc.action, "risk assessed; prescriber told")
    rig.click(sc.action_button)
    assert course.saving is not None
    course.saving.wait()
    rig.settle()
    assert not model.state.suicidality_pending
    assert not any(a.key == "phq9_item9" for a in model.active_alarms())

    # -- a therapist joins and writes a note (the demo nurse cannot write it)
    course.tabs.setCurrentWidget(course.therapist)
    t = course.therapist
    qtbot.keyClicks(t.user, "tess")
    qtbot.keyClicks(t.password, "a long enough secret")
    rig.click(t.join_button)
    assert course.saving is not None
    course.saving.wait()
    rig.settle()
    assert "Tess Therapist" in t.assigned.text()
    t.note.setPlainText("Intention: grief work")
    assert "therapist" in rig.save(course)
    rig.click(course.cancel_button)

    # -- the course view, from the course panel (its own tab)
    course = rig.open(view, "course")
    course.tabs.setCurrentWidget(course.screening)
    assert course.screening.view_button.isEnabled()
    rig.click(course.screening.view_button)
    assert course.saving is not None
    course.saving.wait()
    rig.settle()
    win = course.course_view
    assert course.tabs.currentWidget() is win and win.table.rowCount() == 1
    assert win.table.item(0, 3).text() == "35 mg IM (0.5 mg/kg)"
    assert win.table.item(0, 11).text() == "17"
    assert "Heart disease (yes: stable angina)" in win.precautions.text()
    assert not course.save_button.isVisible()
    rig.shot("course-2-course-view-at-the-chair")
    rig.click(course.cancel_button)

    # -- discharge after the IM route's minimum
    rig.advance(122)
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[5]) == ""
    rig.settle()
    dis = rig.open(view, "discharge")
    for box in dis.checks.values():
        box.setChecked(True)
    dis.ready.setValue(90)
    qtbot.keyClicks(dis.password, "demo")
    err = rig.save(dis)
    if err:  # the simulated desaturation may still be flagged: a physician accepts it
        qtbot.keyClicks(dis.override_reason, "recovered, observed")
        qtbot.keyClicks(dis.override_user, "doctor")
        qtbot.keyClicks(dis.override_password, "demo")
        qtbot.keyClicks(dis.password, "demo")
        assert rig.save(dis) == ""
    last = model.last_state
    assert model.state is None and last is not None and last.discharge is not None
    with Session(rig.engine) as s:
        waste = s.scalars(select(DoseWaste)).one()
        assert waste.mg == 15 and waste.witnessed_by_id != waste.recorded_by_id
        tc = s.scalars(select(TreatmentCourse)).one()
        assert tc.contraindications_open == "" and tc.precautions == "Heart disease"


def test_a_sublingual_session_runs_to_discharge(rig: Rig, qtbot: Any) -> None:
    view = rig.view(1)
    model = view.model
    rig.show(view)
    qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)
    start = rig.open(view, "start")
    for field, text in ((start.mrn, "SL-1"), (start.first, "Sol"), (start.last, "Lingual")):
        qtbot.keyClicks(field, text)
    start.oral.setChecked(True)
    start.oral_mg.setValue(200)
    start.oral_form.setCurrentIndex(start.oral_form.findData("sublingual_troche"))
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    pre = rig.open(view, "screening")
    pre.sys.setValue(122)
    pre.dia.setValue(76)
    pre.hr.setValue(70)
    pre.fasting.setChecked(True)
    pre.escort.setChecked(True)
    assert rig.save(pre) == ""
    dose = rig.open(view, "dose")
    assert "sublingual 200 mg (Sublingual troche / lozenge)" in dose.administer.planned.text()
    assert not dose.administer.site.isVisibleTo(dose)
    f = dose.administer
    qtbot.keyClicks(f.product, "Ketamine troche 100 mg")
    f.concentration.setValue(100)
    qtbot.keyClicks(f.lot, "T9")
    qtbot.keyClicks(f.expiry, "2020-01-31")
    f.drawn.setValue(200)
    assert "expired on 2020-01-31" in rig.save(dose)
    f.expiry.clear()
    qtbot.keyClicks(f.expiry, "2099-01-31")
    assert rig.save(dose) == ""
    a = model.state.administration
    assert a is not None and (a.route, a.given_mg) == ("sublingual", 200.0)
    rig.advance(122)
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[5]) == ""
    dis = rig.open(view, "discharge")
    for box in dis.checks.values():
        box.setChecked(True)
    dis.ready.setValue(90)
    qtbot.keyClicks(dis.password, "demo")
    if rig.save(dis):  # the simulated desaturation may still be flagged: a physician accepts it
        qtbot.keyClicks(dis.override_reason, "recovered, observed")
        qtbot.keyClicks(dis.override_user, "doctor")
        qtbot.keyClicks(dis.override_password, "demo")
        qtbot.keyClicks(dis.password, "demo")
        assert rig.save(dis) == ""
    last = model.last_state
    assert model.state is None and last is not None and last.discharge is not None
    assert last.discharge.total_min >= 122
