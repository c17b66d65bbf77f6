"""The REMS Patient Monitoring Form: the versioned definition, the form filled from a session,
what is missing, carried-over values, the deadline, and the desk commands."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ketamon.core import commands as c
from ketamon.core import pmf
from ketamon.core.desk import DeskContext, Reviewed, SessionDesk
from ketamon.core.ports import EntryDraft
from ketamon.core.session import Refused
from ketamon.domain.record import EntryKind, PatientInfo, fold
from ketamon.domain.site import SiteProfile
from ketamon.resources import resource
from tests.core.helpers import (
    ALEX,
    AUDITOR,
    IV,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    T0,
    Chair,
    Passwords,
    make_chair,
    screening,
    start_and_dose,
)

CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}
SITE: dict[str, Any] = {"name": "test", **SiteProfile().settings()}
CLINIC: dict[str, Any] = {
    **SITE,
    "hcp_name": "Rita Nurse",
    "hcp_phone": "415 555 0100",
    "hcp_email": "rems@clinic.example",
    "setting_name": "Bay Clinic",
    "setting_address1": "1 Main St",
    "setting_city": "San Francisco",
    "setting_state": "CA",
    "setting_zip": "94110",
    "rems_certified": True,
}
FULL = dataclasses.replace(
    ALEX, middle_initial="Q", date_of_birth="1980-02-03", sex="F", mrn="MRN-9"
)


def reviewed(chair: Chair, sid: int | None = None) -> Reviewed:
    if sid is None:
        state = chair.core.last_state
        assert state is not None
        sid = state.session_id
    entries = tuple(chair.repo.load(sid))
    st = fold(entries)
    assert st is not None
    return Reviewed(entries, st)


def esketamine_session(
    chair: Chair, patient: PatientInfo = FULL, *, manual_40: bool = True
) -> int:
    """Screened at 120/80, two devices (lot LOT-A), a cuff BP 138/88 typed in 40 min after the
    first device, discharged at 121 min with 125/80, ready to leave at 90 min."""
    start_and_dose(chair, patient)
    state = chair.core.state
    assert state is not None and state.first_dose is not None
    chair.clock.advance(minutes=35)  # first dose + 40
    if manual_40:
        chair.do(c.RecordVitals({"nibp_sys": 138, "nibp_dia": 88}))
    chair.clock.advance(minutes=81)
    chair.readings(nibp_sys=125, nibp_dia=80, hr=72, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))
    chair.do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
    return state.session_id


def desk(chair: Chair, site: dict[str, Any] = CLINIC) -> SessionDesk:
    return SessionDesk(chair.repo, Passwords(), chair.clock, site=site)


def sign(chair: Chair, sid: int) -> None:
    """A signature entry as the signing handler records it (kept independent of its rules)."""
    state = reviewed(chair, sid).state
    data = {
        "name": PHYSICIAN.full_name,
        "credentials": "MD",
        "meaning_id": "reviewed",
        "meaning": "Reviewed and approved",
        "content_sha256": "ab" * 32,
        "covers_entry_id": state.last_entry_id,
    }
    chair.repo.append(sid, [EntryDraft(EntryKind.SIGNED, chair.clock.now, data)], PHYSICIAN)


# ---- the definition --------------------------------------------------------------------------


def test_the_2024_definition_has_every_field_of_the_form_and_round_trips() -> None:
    d = pmf.load_definition("2024")
    assert d.id == "2024" and "§1.4" in d.source
    ids = {f.id for f in d.fields}
    for needed in (
        "patient_first_name",
        "patient_sex",
        "first_treatment",
        "patient_enrolled",
        "med_benzodiazepine",
        "med_hypnotic",
        "med_opioid",
        "med_psychostimulant",
        "med_maoi",
        "hcp_name",
        "hcp_phone",
        "hcp_email",
        "setting_name",
        "setting_zip",
        "treatment_date",
        "dose",
        "lot_numbers",
        "total_minutes",
        "ready_to_leave_min",
        "vitals_ok_before",
        "vitals_ok_end",
        "bp_predose",
        "bp_40min",
        "bp_end",
        "sedation",
        "dissociation",
        "respiratory_depression",
        "pulse_oximetry_used",
        "serious_adverse_event",
    ):
        assert needed in ids, needed
    assert d.field("dose") is not None and d.field("dose").choices == ("56 mg", "84 mg", "other")  # type: ignore[union-attr]
    text = pmf.dump_definition(d)
    assert pmf.parse_definition(text, "dumped") == d
    assert pmf.parse_definition(pmf.dump_definition(pmf.parse_definition(text)), "again") == d
    assert pmf.load_definition() == pmf.load_definitions()["2024"]  # the newest shipped


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('type = "yesno"', 'type = "maybe"', 1),
            "field 'first_treatment': type",
        ),
        (
            lambda t: t.replace('source = "dose.lots"', 'source = "dose.lot"'),
            "field 'lot_numbers': unknown source 'dose.lot'",
        ),
        (
            lambda t: t.replace("required = true", 'required = "yes"', 1),
            "field 'patient_first_name': 'required' must be true or false",
        ),
        (
            lambda t: t.replace('id = "patient_last_name"', 'id = "patient_first_name"'),
            "field 'patient_first_name': duplicate id",
        ),
        (
            lambda t: t.replace('choices = ["male", "female", "other"]', "choices = []"),
            "field 'patient_sex': a choice field needs distinct non-empty 'choices'",
        ),
        (
            lambda t: t.replace('when = "first_treatment"', 'when = "nope"'),
            "field 'patient_enrolled': 'when' must name a yes/no field",
        ),
        (lambda t: t.replace("schema_version = 1", "schema_version = 9"), "schema_version"),
        (lambda t: t + "\nextra = 1\n", "unknown key 'extra'"),
        (lambda t: t + "\n[[field\n", "not valid TOML"),
    ],
)
def test_bad_definitions_name_the_file_and_the_field(edit, message, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = resource("pmf", "pmf-2024.toml").read_text(encoding="utf-8")
    changed = edit(text)
    assert changed != text
    (tmp_path / "pmf-2024.toml").write_text(changed, "utf-8")
    with pytest.raises(pmf.PmfDefinitionError) as exc:
        pmf.load_definitions(tmp_path)
    assert str(exc.value).startswith("pmf/pmf-2024.toml: ")
    assert message in str(exc.value)


def test_a_definition_must_match_its_file_name(tmp_path: Path) -> None:
    text = resource("pmf", "pmf-2024.toml").read_text(encoding="utf-8")
    (tmp_path / "pmf-2030.toml").write_text(text, "utf-8")
    with pytest.raises(pmf.PmfDefinitionError, match="does not match the file name"):
        pmf.load_definitions(tmp_path)


def _with_2025(tmp_path: Path) -> Path:
    shutil.copy(Path(str(resource("pmf", "pmf-2024.toml"))), tmp_path / "pmf-2024.toml")
    d = pmf.load_definition("2024")
    extra = pmf.FieldSpec(
        "monitoring_minutes_confirmed",
        "Monitoring lasted at least 2 hours",
        "Monitoring",
        "yesno",
        True,
        "user",
    )
    newer = dataclasses.replace(d, id="2025", fields=(*d.fields, extra))
    (tmp_path / "pmf-2025.toml").write_text(pmf.dump_definition(newer), "utf-8")
    return tmp_path


def test_a_form_saved_against_2024_still_renders_after_2025_ships(tmp_path: Path) -> None:
    root = _with_2025(tmp_path)
    assert list(pmf.load_definitions(root)) == ["2024", "2025"]
    chair = make_chair()
    sid = esketamine_session(chair)
    # nothing saved yet: a new form uses the newest version
    fresh = pmf.build_form(reviewed(chair, sid), CLINIC, root=root)
    assert fresh.version == "2025" and "Monitoring lasted at least 2 hours" in fresh.missing
    desk(chair).execute(sid, c.EnterPmfFields({"hcp_name": "Dr Who"}, "2024"), NURSE)
    r = reviewed(chair, sid)
    assert r.state.pmf_version == "2024"
    form = pmf.build_form(r, CLINIC, root=root)
    assert form.version == "2024"
    assert form.value("hcp_name") == "Dr Who" and form.get("hcp_name").origin == pmf.ENTERED
    with pytest.raises(KeyError):
        form.get("monitoring_minutes_confirmed")
    assert form.missing == []
    from ketamon.exports.pmf_pdf import pmf_html

    assert "Dr Who" in pmf_html(form)
    # a version that was removed is named, not guessed
    (root / "pmf-2024.toml").unlink()
    with pytest.raises(pmf.PmfDefinitionError, match="no PMF definition for form version '2024'"):
        pmf.build_form(r, CLINIC, root=root)


# ---- filling ---------------------------------------------------------------------------------


def test_an_esketamine_session_fills_the_form_from_the_record_and_the_site() -> None:
    chair = make_chair()
    sid = esketamine_session(chair)
    form = pmf.build_form(reviewed(chair, sid), CLINIC, tz=UTC)
    v = form.value
    assert form.required and form.version == "2024"
    assert (v("patient_first_name"), v("patient_middle_initial"), v("patient_last_name")) == (
        "Alex",
        "Q",
        "Demo",
    )
    assert (v("patient_date_of_birth"), v("patient_sex")) == ("1980-02-03", "female")
    assert v("first_treatment") is False and not form.get("patient_enrolled").applies
    assert v("med_opioid") is False and v("med_benzodiazepine") is False
    assert v("hcp_name") == "Rita Nurse" and form.get("hcp_name").origin == pmf.SITE
    assert v("setting_rems_certified") is True
    assert v("treatment_date") == "2026-11-30"
    assert (v("dose"), v("lot_numbers")) == ("56 mg", "LOT-A")
    assert (v("total_minutes"), v("ready_to_leave_min")) == (121, 90)
    assert (v("bp_predose"), v("bp_40min"), v("bp_end")) == ([120, 80], [138, 88], [125, 80])
    assert form.get("bp_40min").origin == pmf.RECORD
    assert (v("vitals_ok_before"), v("vitals_ok_end"), v("pulse_oximetry_used")) == (
        True,
        True,
        True,
    )
    assert (v("sedation"), v("dissociation"), v("respiratory_depression")) == (
        False,
        False,
        False,
    )
    assert v("serious_adverse_event") is False
    assert form.missing == [] and pmf.missing_fields(reviewed(chair, sid), CLINIC) == []
    assert len(form.sha256) == 64
    assert form.sha256 == pmf.build_form(reviewed(chair, sid), CLINIC, tz=UTC).sha256
    doc = form.to_json()
    assert doc["form_version"] == "2024" and doc["missing"] == []
    assert {f["id"]: f["origin"] for f in doc["fields"]}["hcp_email"] == "site"


def test_the_40_minute_bp_comes_from_the_monitor_readings_nearest_40_min_in_the_window() -> None:
    chair = make_chair()
    sid = esketamine_session(chair, manual_40=False)
    r = reviewed(chair, sid)
    first = r.state.first_dose
    assert first is not None

    def at(m: float) -> datetime:
        return first + timedelta(minutes=m)

    readings = [
        ("nibp_sys", 150.0, at(30)),  # outside 35-45
        ("nibp_dia", 95.0, at(30)),
        ("nibp_sys", 141.0, at(37)),
        ("nibp_dia", 91.0, at(37)),
        ("nibp_sys", 139.0, at(41)),  # nearest 40
        ("nibp_dia", 89.0, at(41) + timedelta(seconds=2)),
        ("hr", 80.0, at(40)),
    ]
    assert pmf.missing_fields(r, CLINIC) == [
        "Blood pressure about 40 minutes after administration (mmHg)"
    ]
    form = pmf.build_form(r, CLINIC, readings=readings)
    assert form.value("bp_40min") == [139, 89] and form.get("bp_40min").origin == pmf.MONITOR
    assert pmf.missing_fields(r, CLINIC, readings=readings) == []
    narrow = {**CLINIC, "bp40_window_min": [42.0, 45.0]}
    assert pmf.build_form(r, narrow, readings=readings).value("bp_40min") is None


def test_missing_fields_lists_the_empty_required_ones_until_entered() -> None:
    chair = make_chair()
    sid = esketamine_session(chair, ALEX)  # no date of birth, no sex; the site is not filled in
    missing = pmf.missing_fields(reviewed(chair, sid), SITE)
    assert missing[:2] == ["Patient date of birth", "Patient sex"]
    assert "Monitoring HCP first and last name" in missing and "Setting ZIP code" in missing
    assert "Setting address line 2" not in missing  # optional
    assert "Patient middle initial" not in missing
    d = desk(chair, SITE)
    d.execute(
        sid,
        c.EnterPmfFields({"patient_date_of_birth": "1975-06-01", "patient_sex": "male"}, "2024"),
        NURSE,
    )
    after = pmf.missing_fields(reviewed(chair, sid), SITE)
    assert after == missing[2:]
    form = pmf.build_form(reviewed(chair, sid), SITE)
    assert form.get("patient_sex").origin == pmf.ENTERED


def test_patient_hcp_and_setting_are_carried_over_from_the_previous_session_to_confirm() -> None:
    chair = make_chair()
    first = esketamine_session(chair, ALEX)
    d = desk(chair, SITE)
    entered = {
        "patient_date_of_birth": "1975-06-01",
        "patient_sex": "male",
        "hcp_name": "Rita Nurse",
        "hcp_phone": "415 555 0100",
    }
    d.execute(first, c.EnterPmfFields(entered, "2024"), NURSE)
    chair.clock.advance(minutes=60 * 24 * 7)
    second = esketamine_session(chair, ALEX)
    form = pmf.build_form(reviewed(chair, second), SITE, reviewed(chair, first))
    for fid, value in entered.items():
        f = form.get(fid)
        assert (f.value, f.origin, f.note) == (value, pmf.CARRIED, "carried over, confirm"), fid
        assert f.spec.label in form.missing  # until confirmed
    assert form.get("patient_first_name").origin == pmf.RECORD  # the record has it
    assert form.get("total_minutes").origin == pmf.RECORD  # never carried
    assert "Patient sex" in form.carried_over
    d.execute(second, c.EnterPmfFields({"patient_sex": "male"}, "2024"), NURSE)
    again = pmf.build_form(reviewed(chair, second), SITE, reviewed(chair, first))
    assert again.get("patient_sex").origin == pmf.ENTERED
    assert "Patient sex" not in again.missing and "Patient date of birth" in again.missing


def test_only_esketamine_sessions_with_a_dose_need_a_pmf() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, IV, confirmed=True))
    chair.do(screening())
    r = reviewed(chair)
    assert not pmf.build_form(r, SITE).required and pmf.missing_fields(r, SITE) == []
    assert pmf.deadline(r.state, T0, SITE).status == "not_required"
    chair2 = make_chair()
    sid = esketamine_session(chair2)
    off = {**CLINIC, "pmf_required": False}
    assert pmf.deadline(reviewed(chair2, sid).state, T0, off).status == "not_required"


# ---- the deadline ----------------------------------------------------------------------------


def test_deadline_statuses_over_the_week_and_after_submission() -> None:
    chair = make_chair()
    sid = esketamine_session(chair)
    state = reviewed(chair, sid).state
    day0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)

    def status(days: int, site: dict[str, Any] = CLINIC) -> pmf.PmfDeadline:
        return pmf.deadline(state, day0 + timedelta(days=days), site, tz=UTC)

    assert status(0) == pmf.PmfDeadline("due", date(2026, 12, 7), 7)
    assert status(4).status == "due"
    assert status(5) == pmf.PmfDeadline("warned", date(2026, 12, 7), 2)
    assert status(7) == pmf.PmfDeadline("warned", date(2026, 12, 7), 0)
    assert status(8) == pmf.PmfDeadline("overdue", date(2026, 12, 7), -1)
    ten = {**CLINIC, "pmf_deadline_days": 10, "pmf_warn_day": 8}
    assert status(8, ten).status == "warned" and status(7, ten).status == "due"
    # submitted
    sign(chair, sid)
    chair.clock.advance(minutes=60)
    desk(chair).execute(
        sid, c.RecordPmfSubmission("portal", chair.clock.now.isoformat(), "REF-1"), NURSE
    )
    after = reviewed(chair, sid).state
    assert pmf.deadline(after, day0 + timedelta(days=9), CLINIC, tz=UTC).status == "submitted"


def test_board_counts_due_warned_overdue_and_submitted_oldest_first() -> None:
    chair = make_chair()
    ids = []
    for _ in range(4):
        ids.append(esketamine_session(chair))
        chair.clock.advance(minutes=60 * 24 * 3)  # every 3 days
    chair.do(c.StartSession(dataclasses.replace(ALEX, mrn="MRN-IV"), IV, confirmed=True))
    iv = chair.core.state
    assert iv is not None
    sign(chair, ids[3])
    desk(chair).execute(
        ids[3], c.RecordPmfSubmission("fax", chair.clock.now.isoformat(), "FAX-77"), NURSE
    )
    reviews = [reviewed(chair, i) for i in [*reversed(ids), iv.session_id]]
    now = T0 + timedelta(days=9, hours=12)  # sessions on days 0, 3, 6, 9
    b = pmf.board(reviews, now, CLINIC, tz=UTC)
    assert dict(b.counts) == {"due": 1, "warned": 1, "overdue": 1, "submitted": 1}
    assert [i.session_id for i in b.items] == ids
    assert [i.deadline.status for i in b.items] == ["overdue", "warned", "due", "submitted"]


# ---- desk commands ---------------------------------------------------------------------------


def test_entering_fields_is_checked_against_the_definition() -> None:
    chair = make_chair()
    sid = esketamine_session(chair)
    d = desk(chair)

    def refused(cmd: c.EnterPmfFields, actor: Any = NURSE) -> list[str]:
        with pytest.raises(Refused) as exc:
            d.execute(sid, cmd, actor)
        return exc.value.reasons

    assert "Unknown PMF field(s) for version 2024: shoe_size, hat" in refused(
        c.EnterPmfFields({"shoe_size": 9, "hat": "no", "hcp_name": "X"}, "2024")
    )
    reasons = refused(
        c.EnterPmfFields(
            {
                "patient_sex": "unknown",
                "bp_40min": "300/400",
                "med_opioid": "yes",
                "patient_date_of_birth": "03/02/1980",
                "total_minutes": -3,
                "hcp_name": 5,
            },
            "2024",
        )
    )
    assert len(reasons) == 6
    assert "Patient sex (patient_sex) must be one of male, female, other" in reasons
    assert any("bp_40min" in r and "systolic/diastolic" in r for r in reasons)
    assert any("med_opioid" in r and "yes or no" in r for r in reasons)
    assert any("YYYY-MM-DD" in r for r in reasons)
    assert refused(c.EnterPmfFields({}, "2024")) == ["Enter at least one PMF field"]
    assert refused(c.EnterPmfFields({"hcp_name": "X"}, "1999"))[0].startswith(
        "no PMF definition for form version '1999'"
    )
    assert refused(c.EnterPmfFields({"hcp_name": "X"}, "2024"), AUDITOR)  # auditors only read
    # accepted, normalised; the physician too
    d.execute(sid, c.EnterPmfFields({"bp_40min": "140/90", "total_minutes": 125.0}, "2024"), NURSE)
    d.execute(sid, c.EnterPmfFields({"hcp_name": "  Dr Paul  "}, "2024"), PHYSICIAN)
    state = reviewed(chair, sid).state
    assert dict(state.pmf_values) == {
        "bp_40min": [140, 90],
        "total_minutes": 125,
        "hcp_name": "Dr Paul",
    }
    assert state.pmf_version == "2024"
    # then frozen by the signature
    sign(chair, sid)
    reason = refused(c.EnterPmfFields({"hcp_name": "Y"}, "2024"))[0]
    assert "frozen" in reason or "locked" in reason
    ctx = DeskContext(chair.clock.now, NURSE, Passwords(), CLINIC)
    with pytest.raises(Refused, match="PMF values are frozen"):
        pmf.enter_fields(reviewed(chair, sid), c.EnterPmfFields({"hcp_name": "Y"}, "2024"), ctx)


def test_iv_sessions_take_no_pmf_fields() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, IV, confirmed=True))
    state = chair.core.state
    assert state is not None
    with pytest.raises(Refused, match="needs no Patient Monitoring Form"):
        desk(chair).execute(state.session_id, c.EnterPmfFields({"hcp_name": "X"}, "2024"), NURSE)


def test_a_submission_is_recorded_only_after_signing_with_the_forms_version_and_hash() -> None:
    chair = make_chair()
    sid = esketamine_session(chair)
    d = desk(chair)
    now = chair.clock.now
    with pytest.raises(Refused) as exc:
        d.execute(sid, c.RecordPmfSubmission("portal", now.isoformat(), "REF-1"), NURSE)
    assert exc.value.reasons == ["Sign the session first: the form is submitted as signed"]
    sign(chair, sid)
    chair.clock.advance(minutes=10)
    with pytest.raises(Refused) as exc:
        d.execute(
            sid,
            c.RecordPmfSubmission(
                "email", (chair.clock.now + timedelta(hours=1)).isoformat(), " "
            ),
            NURSE,
        )
    assert exc.value.reasons == [
        "Submission method must be portal or fax, got 'email'",
        "Enter the confirmation reference the REMS gave",
        "The submission time is in the future",
    ]
    with pytest.raises(Refused, match="ISO date and time"):
        d.execute(sid, c.RecordPmfSubmission("fax", "yesterday", "R"), NURSE)
    signed_form = pmf.build_form(reviewed(chair, sid), CLINIC)
    when = (chair.clock.now - timedelta(minutes=5)).isoformat()
    d.execute(sid, c.RecordPmfSubmission("fax", when, " CONF-123 "), NURSE)
    sub = reviewed(chair, sid).state.pmf_submissions[-1]
    assert (sub.method, sub.reference, sub.form_version) == ("fax", "CONF-123", "2024")
    assert sub.form_sha256 == signed_form.sha256
    assert datetime.fromisoformat(sub.submitted_at) == datetime.fromisoformat(when)
    with pytest.raises(Refused):
        d.execute(sid, c.RecordPmfSubmission("fax", when, "X"), AUDITOR)
