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
