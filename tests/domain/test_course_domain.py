"""Issue 15, the pure rules: screening hard stop and override, routes' dose maths, PHQ-9
scoring and bands and the item-9 flag, RASS flags, the course schedule, the dose report, and
the scale packs' licence status."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta

import pytest

from ketamon.domain.course import (
    CoursePlan,
    SlotStatus,
    esketamine_dose_note,
    plan_problems,
    planned_dates,
    schedule,
)
from ketamon.domain.dosing import (
    DoseLine,
    Supply,
    dose_report,
    im_dose_mg,
    quantity_problems,
    supply_problems,
    volume_ml,
)
from ketamon.domain.outcome_scales import (
    SPECS,
    Licence,
    ScaleId,
    ScalePackError,
    parse_scale_pack,
    phq9_band,
    rass_priority,
    score_scale,
)
from ketamon.domain.screening import (
    CONTRAINDICATIONS,
    ITEMS,
    PRECAUTIONS,
    Answer,
    ItemAnswer,
    Override,
    Screening,
    precaution_lines,
    screening_blockers,
    screening_problems,
)
from ketamon.resources import read_text

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def all_no(**changes: ItemAnswer) -> dict[str, ItemAnswer]:
    answers = {k: ItemAnswer(Answer.NO) for k in ITEMS}
    answers.update(changes)
    return answers


# ---- screening ----------------------------------------------------------------------------


def test_screening_needs_every_item_and_a_note_for_a_contraindication() -> None:
    answers = all_no()
    del answers["pregnancy"]
    assert screening_problems(answers) == ["Answer every screening item: Pregnancy"]
    yes = all_no(arteriovenous_malformation=ItemAnswer(Answer.YES))
    assert screening_problems(yes) == [
        "Arteriovenous malformation: a 'yes' to a contraindication needs a note"
    ]
    assert screening_problems(all_no()) == []
    assert len(CONTRAINDICATIONS) == 4 and len(PRECAUTIONS) == 8


def test_a_contraindication_stops_dosing_until_a_physician_overrides_it() -> None:
    s = Screening(
        1, T0, "Dr P", all_no(hypersensitivity=ItemAnswer(Answer.YES, "rash after ketamine"))
    )
    blocked = screening_blockers(s, (), T0 + timedelta(days=1), 90)
    assert len(blocked) == 1
    assert "Hypersensitivity to ketamine or esketamine (yes)" in blocked[0]
    over = Override(2, T0, "Dr P", 1, ("hypersensitivity",), "allergist: not ketamine")
    assert screening_blockers(s, (over,), T0 + timedelta(days=1), 90) == []
    # an override of an earlier screening does not carry over to a new one
    again = Screening(3, T0 + timedelta(days=2), "Dr P", s.answers)
    assert screening_blockers(again, (over,), T0 + timedelta(days=3), 90) != []


def test_unknown_contraindication_blocks_and_no_screening_blocks() -> None:
    s = Screening(1, T0, "Dr P", all_no(intracerebral_haemorrhage=ItemAnswer(Answer.UNKNOWN)))
    assert "History of intracerebral haemorrhage (unknown)" in screening_blockers(s, (), T0, 90)[0]
    assert screening_blockers(None, (), T0, 90)[0].startswith("Screen the patient first")


def test_screening_expires_after_the_rescreen_interval() -> None:
    s = Screening(1, T0, "Dr P", all_no())
    assert screening_blockers(s, (), T0 + timedelta(days=89, hours=23), 90) == []
    late = screening_blockers(s, (), T0 + timedelta(days=90), 90)
    assert late == ["The screening of 2026-11-02 is older than 90 days: screen the patient again"]


def test_precautions_are_listed_with_their_notes() -> None:
    s = Screening(
        1,
        T0,
        "Dr P",
        all_no(
            heart_disease=ItemAnswer(Answer.YES, "stable angina"),
            pregnancy=ItemAnswer(Answer.UNKNOWN),
        ),
    )
    assert precaution_lines(s) == ["Heart disease (yes: stable angina)", "Pregnancy (unknown)"]
    assert screening_blockers(s, (), T0, 90) == []  # precautions never stop dosing


# ---- routes and accountability -----------------------------------------------------------


def test_im_dose_maths_and_limits() -> None:
    assert im_dose_mg(0.5, 70) == 35.0
    assert im_dose_mg(0.75, 81.3) == 61.0  # 60.975 rounded to 0.1 mg
    assert volume_ml(35.0, 50.0) == 0.7
    with pytest.raises(ValueError, match="at most 2 mg/kg"):
        im_dose_mg(2.5, 70)
    with pytest.raises(ValueError, match="weight"):
        im_dose_mg(0.5, 0)


def test_supply_and_quantities() -> None:
    ok = Supply("Ketamine HCl 50 mg/mL", 50.0, "K123", "2027-06-30")
    assert supply_problems(ok, date(2026, 11, 30)) == []
    expired = Supply("Ketamine HCl 50 mg/mL", 50.0, "K122", "2026-11-29")
    assert supply_problems(expired, date(2026, 11, 30)) == [
        "Lot K122 expired on 2026-11-29: do not give it"
    ]
    bad = Supply("", 0.0, "", "30/06/2027")
    assert len(supply_problems(bad, date(2026, 11, 30))) == 4
    assert quantity_problems(50.0, 35.0) == []
    assert quantity_problems(30.0, 35.0) == ["Given (35 mg) cannot be more than drawn (30 mg)"]
    assert quantity_problems(float("nan"), 35.0) != []


def test_dose_report_totals_per_product_and_lot() -> None:
    day = date(2026, 11, 30)
    esk = "Esketamine nasal spray (28 mg device)"
    lines = [
        DoseLine(day, 1, esk, "E1", "nasal", given_mg=28.0, devices=1),
        DoseLine(day, 1, esk, "E1", "nasal", given_mg=28.0, devices=1),
        DoseLine(day, 2, esk, "E1", "nasal", given_mg=28.0, devices=1),
        # a partly used device disposed: 10 mg moves from given to wasted
        DoseLine(day, 2, esk, "E1", "nasal", given_mg=-10.0, wasted_mg=10.0),
        DoseLine(day, 3, "Ketamine 50 mg/mL", "K1", "im", given_mg=35.0),
        DoseLine(day, 3, "Ketamine 50 mg/mL", "K1", "", wasted_mg=15.0),
        DoseLine(day, 4, "Ketamine troche 100 mg", "T9", "sublingual", given_mg=200.0),
        DoseLine(day + timedelta(days=1), 5, "Ketamine 50 mg/mL", "K1", "im", given_mg=40.0),
    ]
    rows = {(r.product, r.lot): r for r in dose_report(lines, day)}
    assert set(rows) == {
        (esk, "E1"),
        ("Ketamine 50 mg/mL", "K1"),
        ("Ketamine troche 100 mg", "T9"),
    }
    e = rows[(esk, "E1")]
    assert (e.administrations, e.sessions, e.devices) == (3, 2, 3)
    assert (e.given_mg, e.wasted_mg, e.accounted_mg) == (74.0, 10.0, 84.0)
    k = rows[("Ketamine 50 mg/mL", "K1")]
    assert (k.administrations, k.given_mg, k.wasted_mg, k.accounted_mg) == (1, 35.0, 15.0, 50.0)
    assert rows[("Ketamine troche 100 mg", "T9")].given_mg == 200.0


# ---- scales -------------------------------------------------------------------------------


def test_phq9_scoring_bands_and_item9() -> None:
    zero = {i: 0 for i in range(1, 10)}
    r = score_scale(ScaleId.PHQ9, zero)
    assert (r.total, r.band, r.suicidality) == (0, "minimal", False)
    r = score_scale(ScaleId.PHQ9, {**zero, 1: 3, 2: 3, 3: 3, 4: 1, 9: 1})
    assert (r.total, r.band, r.suicidality) == (11, "moderate", True)
    bands = [phq9_band(t) for t in (4, 5, 9, 10, 14, 15, 19, 20, 27)]
    assert bands == [
        "minimal",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "moderately severe",
        "moderately severe",
        "severe",
        "severe",
    ]
    with pytest.raises(ValueError, match="answer item"):
        score_scale(ScaleId.PHQ9, {1: 0})
    with pytest.raises(ValueError, match="item 2: score must be 0-3"):
        score_scale(ScaleId.PHQ9, {**zero, 2: 4})


def test_other_scales_score_in_their_ranges() -> None:
    assert score_scale(ScaleId.BPRS_PLUS, {1: 1, 2: 2, 3: 1, 4: 7}).total == 11
    with pytest.raises(ValueError, match="1-7"):
        score_scale(ScaleId.BPRS_PLUS, {1: 0, 2: 1, 3: 1, 4: 1})
    assert score_scale(ScaleId.CGI_S, {1: 5}).total == 5
    madrs = score_scale(ScaleId.MADRS, {i: 3 for i in range(1, 11)})
    assert (madrs.total, madrs.band) == (30, "moderate")
    assert SPECS[ScaleId.MADRS].total_range == (0, 60)


def test_rass_flags() -> None:
    assert [rass_priority(s) for s in range(-5, 5)] == [
        "high",
        "high",
        "medium",
        "medium",
        None,
        None,
        None,
        "medium",
        "medium",
        "medium",
    ]
    with pytest.raises(ValueError):
        rass_priority(5)


def test_scale_packs_declare_their_licence_and_restricted_ones_ship_no_wording() -> None:
    index = tomllib.loads(read_text("scales", "licences.toml"))
    for scale in ScaleId:
        pack = parse_scale_pack(read_text("scales", f"{scale.value}.toml"), scale.value)
        assert pack.licence.value == index[scale.value]["licence"]
        assert set(pack.item_labels) == set(range(1, SPECS[scale].items + 1))
    madrs = parse_scale_pack(read_text("scales", "madrs.toml"), "madrs.toml")
    assert madrs.licence is Licence.RESTRICTED
    assert all(label == f"Item {n}" for n, label in madrs.item_labels.items())
    assert index["cadss"]["licence"] == "restricted"
    phq = parse_scale_pack(read_text("scales", "phq9.toml"), "phq9.toml")
    assert phq.label(9).startswith("Thoughts that you would be better off dead")
    worded = read_text("scales", "madrs.toml").replace('1 = "Item 1"', '1 = "Apparent sadness"')
    with pytest.raises(ScalePackError, match="neutral labels only"):
        parse_scale_pack(worded, "madrs.toml")


# ---- the course ---------------------------------------------------------------------------


PLAN = CoursePlan("Treatment-resistant depression", "esketamine", date(2026, 9, 7))


def test_planned_dates_twice_weekly_then_weekly() -> None:
    days = [(p, (d - PLAN.start).days) for p, d in planned_dates(PLAN)]
    assert days == [
        ("induction", 0),
        ("induction", 3),
        ("induction", 7),
        ("induction", 10),
        ("induction", 14),
        ("induction", 17),
        ("induction", 21),
        ("induction", 24),
        ("maintenance", 31),
        ("maintenance", 38),
        ("maintenance", 45),
        ("maintenance", 52),
    ]
    assert plan_problems(PLAN) == []
    assert plan_problems(CoursePlan("", "esketamine", PLAN.start, 0, 9, 0, 0)) == [
        "Enter the indication",
        "Induction frequency must be 0.25-7 a week, got 9",
        "The maintenance interval must be 1-90 days, got 0",
        "The plan has no sessions",
    ]


def test_schedule_shows_a_missed_and_a_late_session() -> None:
    planned = [d for _, d in planned_dates(PLAN)]
    held = [(i + 1, d) for i, d in enumerate(planned[:5])]  # sessions 1-5 on time
    # slot 6 (day 17) is missed; slot 7 (day 21) held a day late still counts as on time
    held.append((7, planned[6] + timedelta(days=1)))
    held.append((8, planned[7]))
    # maintenance slot 9 (day 31) held two days late
    held.append((9, planned[8] + timedelta(days=2)))
    today = PLAN.start + timedelta(days=40)
    slots, extra = schedule(PLAN, held, today)
    status = [s.status for s in slots]
    assert status[:5] == [SlotStatus.DONE] * 5
    assert status[5] is SlotStatus.MISSED and slots[5].session_id is None
    assert status[6] is SlotStatus.DONE and slots[6].days_late == 1
    assert status[7] is SlotStatus.DONE
    assert status[8] is SlotStatus.LATE and slots[8].days_late == 2
    assert status[9] is SlotStatus.DUE  # day 38, its window runs to day 44
    assert status[10:] == [SlotStatus.UPCOMING] * 2
    assert extra == []


def test_an_extra_session_is_outside_the_plan() -> None:
    planned = [d for _, d in planned_dates(PLAN)]
    held = [(1, planned[0]), (2, planned[0] + timedelta(days=1))]
    slots, extra = schedule(PLAN, held, planned[0] + timedelta(days=1))
    assert slots[0].session_id == 1 and extra == [(2, planned[0] + timedelta(days=1))]


def test_esketamine_dose_against_the_label() -> None:
    assert esketamine_dose_note(0, 56.0, None) == ""
    assert esketamine_dose_note(0, 84.0, None) == "Label: day 1 is 56 mg (given 84 mg)"
    assert esketamine_dose_note(2, 84.0, 56.0) == "Dose step 56 → 84 mg"
    assert esketamine_dose_note(3, 84.0, 84.0) == ""
