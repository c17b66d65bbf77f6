from __future__ import annotations

import pytest

from ketamon.domain.thresholds import Priority, ThresholdError, parse_profile
from ketamon.resources import read_text

DEFAULT = read_text("thresholds.toml")


def test_default_profile_loads_with_a_source_for_every_limit() -> None:
    profile = parse_profile(DEFAULT, "thresholds.toml")
    assert profile.limits
    for lim in profile.limits:
        assert lim.source.strip(), lim.id
    assert profile.bp_rise.sys_delta == 40
    assert profile.bp_rise.dia_delta == 25
    assert profile.predose_advisory.sys_above == 140
    assert profile.predose_advisory.dia_above == 90


def test_defaults_match_clinical_reference_table() -> None:
    p = parse_profile(DEFAULT)
    assert p.band("nibp_sys") == (90, 160)
    assert p.band("nibp_dia") == (50, 90)
    assert p.band("nibp_mean") == (60, 110)
    assert p.band("hr") == (50, 120)
    assert p.band("spo2") == (90, None)
    assert p.band("rr") == (5, 30)
    desat = [lim for lim in p.limits_for("spo2") if lim.low == 80]
    assert desat and desat[0].priority is Priority.HIGH


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('priority = "high"', 'priority = "urgent"', 1),
            "limit[6] (spo2_desat): 'priority' must be one of high, medium, low, got 'urgent'",
        ),
        (
            lambda t: t.replace("low = 90\nhigh = 160", "low = 190\nhigh = 160", 1),
            "limit[0] (nibp_sys): 'low' (190) must be below 'high' (160)",
        ),
        (
            lambda t: t.replace('parameter = "hr"', 'parameter = "heart"', 1),
            "limit[3] (hr): unknown parameter 'heart'",
        ),
        (
            lambda t: t.replace("schema_version = 1", "schema_version = 7"),
            "schema_version must be 1, got 7",
        ),
        (
            lambda t: t.replace("sys_delta = 40", 'sys_delta = "forty"'),
            "bp_rise: 'sys_delta' must be a number, got 'forty'",
        ),
        (lambda t: t + "\n[[limit\n", "not valid TOML"),
    ],
)
def test_bad_profiles_name_what_is_wrong_and_where(edit, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ThresholdError) as exc:
        parse_profile(edit(DEFAULT), "site.toml")
    assert str(exc.value).startswith("site.toml")
    assert message in str(exc.value)


def test_with_limit_changes_one_bound_and_keeps_the_rest() -> None:
    p = parse_profile(DEFAULT)
    q = p.with_limit("spo2", 88, None)
    assert q.band("spo2") == (88, None) and p.band("spo2") == (90, None)
    assert q.band("hr") == p.band("hr")
    with pytest.raises(ThresholdError, match="only the existing bounds"):
        p.with_limit("spo2", 88, 99)
    with pytest.raises(ThresholdError, match="no limit"):
        p.with_limit("nope", 1, 2)


def test_iv_hold_table_is_parsed_into_a_typed_rule() -> None:
    p = parse_profile(DEFAULT)
    assert p.iv_hold is not None
    assert (p.iv_hold.sys_at_or_above, p.iv_hold.dia_at_or_above, p.iv_hold.hr_at_or_above) == (
        180,
        100,
        110,
    )
    assert p.iv_hold.priority is Priority.HIGH and p.iv_hold.source.strip()
    assert "iv_hold" not in p.extra
    assert p.with_limit("spo2", 88, None).iv_hold == p.iv_hold  # overrides keep the rule
    assert parse_profile(DEFAULT[: DEFAULT.index("[iv_hold]")]).iv_hold is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("low = 90\nhigh = 160", "low = nan\nhigh = 160", 1),
            "limit[0] (nibp_sys): 'low' must be a finite number, got nan",
        ),
        (
            lambda t: t.replace("low = 90\nhigh = 160", "low = 90\nhigh = inf", 1),
            "limit[0] (nibp_sys): 'high' must be a finite number, got inf",
        ),
        (
            lambda t: t.replace("low = 90\nhigh = 160", "low = -5\nhigh = 160", 1),
            "limit[0] (nibp_sys): 'low' must be within 0–300 mmHg, got -5",
        ),
        (
            lambda t: t.replace("low = 90\nhigh = 160", "low = 90\nhigh = 1600", 1),
            "limit[0] (nibp_sys): 'high' must be within 0–300 mmHg, got 1600",
        ),
        (
            lambda t: t.replace("low = 50\nhigh = 120", "low = 50\nhigh = 400", 1),
            "limit[3] (hr): 'high' must be within 0–300 /min, got 400",
        ),
        (
            lambda t: t.replace("low = 80", "low = 180", 1),
            "limit[6] (spo2_desat): 'low' must be within 0–100 %, got 180",
        ),
        (
            lambda t: t.replace("high = 30", "high = 300", 1),
            "limit[8] (rr_high): 'high' must be within 0–150 /min, got 300",
        ),
        (
            lambda t: t.replace("sys_above = 140", "sys_above = 340"),
            "predose_advisory: 'sys_above' must be within 0–300 mmHg, got 340",
        ),
        (
            lambda t: t.replace("dia_above = 90", "dia_above = -90"),
            "predose_advisory: 'dia_above' must be within 0–300 mmHg, got -90",
        ),
        (
            lambda t: t.replace("sys_delta = 40", "sys_delta = 0"),
            "bp_rise: 'sys_delta' must be above 0 and at most 100 mmHg, got 0",
        ),
        (
            lambda t: t.replace("dia_delta = 25", "dia_delta = 250"),
            "bp_rise: 'dia_delta' must be above 0 and at most 100 mmHg, got 250",
        ),
        (
            lambda t: t.replace("sys_delta = 40", "sys_delta = nan"),
            "bp_rise: 'sys_delta' must be a finite number, got nan",
        ),
        (
            lambda t: t.replace("sys_at_or_above = 180", "sys_at_or_above = 480"),
            "iv_hold: 'sys_at_or_above' must be within 0–300 mmHg, got 480",
        ),
        (
            lambda t: t.replace("hr_at_or_above = 110", "hr_at_or_above = -1"),
            "iv_hold: 'hr_at_or_above' must be within 0–300 /min, got -1",
        ),
        (
            lambda t: t.replace("dia_at_or_above = 100", "dia_at_or_above = inf"),
            "iv_hold: 'dia_at_or_above' must be a finite number, got inf",
        ),
        (
            lambda t: t.replace("dia_at_or_above = 100", 'dia_at_or_above = "100"'),
            "iv_hold: 'dia_at_or_above' must be a number, got '100'",
        ),
        (
            lambda t: t.replace(
                'priority = "high"\nsource = "Site', 'priority = "max"\nsource = "Site'
            ),
            "iv_hold: 'priority' must be one of high, medium, low, got 'max'",
        ),
        (
            lambda t: t.replace(
                "sys_at_or_above = 180\ndia_at_or_above = 100\nhr_at_or_above = 110", ""
            ),
            "iv_hold: needs 'sys_at_or_above', 'dia_at_or_above', 'hr_at_or_above' or several",
        ),
    ],
)
def test_impossible_values_are_rejected_naming_the_field(edit, message) -> None:  # type: ignore[no-untyped-def]
    changed = edit(DEFAULT)
    assert changed != DEFAULT
    with pytest.raises(ThresholdError) as exc:
        parse_profile(changed, "thresholds.toml")
    assert str(exc.value) == f"thresholds.toml: {message}"


def test_session_override_cannot_set_an_impossible_limit() -> None:
    p = parse_profile(DEFAULT)
    with pytest.raises(ThresholdError, match="spo2: 'low' must be within 0–100 %, got 120"):
        p.with_limit("spo2", 120, None)
    with pytest.raises(ThresholdError, match="finite"):
        p.with_limit("spo2", float("nan"), None)
