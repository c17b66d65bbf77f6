from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.prompts import PromptConfig
from ketamon.domain.site import (
    SITE_SCHEMA_VERSION,
    SiteProfile,
    SiteProfileError,
    parse_site_profile,
)
from ketamon.domain.thresholds import parse_profile
from ketamon.resources import read_text
from ketamon.site_settings import load_site_profile

DEFAULT = read_text("site.toml")


def test_default_site_profile_is_the_built_in_behaviour_with_a_source_for_every_value() -> None:
    p = parse_site_profile(DEFAULT, "site.toml")
    assert SITE_SCHEMA_VERSION == 1
    assert p == SiteProfile()
    assert p.bp40_window_min == (35, 45)
    assert p.vitals_interval_min == 15 and p.vitals_grace_min == 5
    assert p.scale_times_min == (40, 90)
    assert p.predischarge_scale_due_min == 105
    assert p.audio_pause_s == 120 and p.latch_high is True
    assert p.min_observation_min == 120
    assert (p.link_lost_low_s, p.link_lost_medium_s, p.nibp_overdue_grace_min) == (9, 30, 2)
    settings = [
        f.name for f in dataclasses.fields(SiteProfile) if f.name not in ("name", "sources")
    ]
    for name in settings:
        assert p.source(name).strip(), name
    assert "Spravato PI §5.6" in p.source("bp40_window_min")


def test_prompt_config_comes_from_the_site_profile() -> None:
    assert SiteProfile().prompt_config() == PromptConfig()
    p = parse_site_profile(
        DEFAULT.replace("vitals_interval_min = 15", "vitals_interval_min = 10").replace(
            "bp40_window_min = [35, 45]", "bp40_window_min = [30, 50]"
        )
    )
    cfg = p.prompt_config()
    assert cfg.vitals_interval_min == 10 and cfg.bp40_window_min == (30, 50)
    assert cfg.predischarge_due_min == 105


def test_latching_flows_from_the_site_profile() -> None:
    thresholds = parse_profile(read_text("thresholds.toml"))
    site = parse_site_profile(DEFAULT.replace("latch_high = true", "latch_high = false"))
    assert AlarmEngine.for_site(thresholds, site).latch_high is False
    assert AlarmEngine.for_site(thresholds, SiteProfile()).latch_high is True


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("schema_version = 1", "schema_version = 2"),
            "schema_version must be 1, got 2",
        ),
        (
            lambda t: t.replace("vitals_interval_min = 15", "vitals_interval_min = 45"),
            "prompts.vitals_interval_min must be within 5–30 min, got 45",
        ),
        (
            lambda t: t.replace("vitals_interval_min = 15", "vitals_interval_min = nan"),
            "prompts.vitals_interval_min must be a finite number, got nan",
        ),
        (
            lambda t: t.replace("bp40_window_min = [35, 45]", "bp40_window_min = [45, 35]"),
            "prompts.bp40_window_min must have 0 < start < end, got [45, 35]",
        ),
        (
            lambda t: t.replace("bp40_window_min = [35, 45]", "bp40_window_min = [35]"),
            "prompts.bp40_window_min must be [start, end] in minutes, got [35]",
        ),
        (
            lambda t: t.replace("scale_times_min = [40, 90]", "scale_times_min = [90, 40]"),
            "prompts.scale_times_min must be above 0 and strictly increasing, got [90, 40]",
        ),
        (
            lambda t: t.replace("scale_times_min = [40, 90]", "scale_times_min = [40, 130]"),
            "prompts.scale_times_min must lie before the minimum observation (120 min), got 130",
        ),
        (
            lambda t: t.replace("audio_pause_min = 2", "audio_pause_min = 10"),
            "alarms.audio_pause_min must be within 1–5 min, got 10",
        ),
        (
            lambda t: t.replace("audio_pause_min = 2", "audio_pause_min = 0.5"),
            "alarms.audio_pause_min must be within 1–5 min, got 0.5",
        ),
        (
            lambda t: t.replace("latch_high = true", 'latch_high = "yes"'),
            "alarms.latch_high must be true or false, got 'yes'",
        ),
        (
            lambda t: t.replace("min_observation_min = 120", "min_observation_min = 60"),
            "observation.min_observation_min must be within 120–480 min, got 60",
        ),
        (
            lambda t: t.replace("link_lost_low_s = 9", "link_lost_low_s = 0"),
            "technical.link_lost_low_s must be above 0 and at most 10 s, got 0",
        ),
        (
            lambda t: t.replace("link_lost_medium_s = 30", "link_lost_medium_s = 8"),
            "technical.link_lost_medium_s must be above link_lost_low_s (9 s), got 8",
        ),
        (
            lambda t: t.replace("vitals_grace_min = 5", "vitals_grace_min = 20"),
            "prompts.vitals_grace_min must be below the vitals interval (15 min), got 20",
        ),
        (
            lambda t: t.replace("nibp_overdue_grace_min = 2\n", ""),
            "technical: missing 'nibp_overdue_grace_min'",
        ),
        (
            lambda t: t.replace('audio_pause_min_source = "', 'audio_pause_min_note = "'),
            "alarms: unknown setting 'audio_pause_min_note'",
        ),
        (
            lambda t: t.replace("link_lost_low_s_source", "link_lost_low_s_sauce"),
            "technical: unknown setting 'link_lost_low_s_sauce'",
        ),
        (
            lambda t: t.replace(
                'vitals_grace_min_source = "Design choice: a periodic-vitals prompt turns '
                'overdue after 5 min"\n',
                "",
            ),
            "prompts: missing 'vitals_grace_min_source' (every value names its source)",
        ),
        (
            lambda t: t.replace("pmf_deadline_days = 7", "pmf_deadline_days = 7.5"),
            "rems.pmf_deadline_days must be a whole number, got 7.5",
        ),
        (
            lambda t: t.replace("pmf_deadline_days = 7", "pmf_deadline_days = 0"),
            "rems.pmf_deadline_days must be within 1–30 days, got 0",
        ),
        (
            lambda t: t.replace("pmf_warn_day = 5", "pmf_warn_day = 9"),
            "rems.pmf_warn_day must not be after the deadline (7 days), got 9",
        ),
        (
            lambda t: t.replace('setting_state = ""', 'setting_state = "California"'),
            "rems.setting_state must be empty or a two-letter state code (e.g. CA), got",
        ),
        (
            lambda t: t.replace('setting_zip = ""', 'setting_zip = "9410"'),
            "rems.setting_zip must be empty or a ZIP code",
        ),
        (
            lambda t: t.replace('hcp_email = ""', 'hcp_email = "nobody"'),
            "rems.hcp_email must be empty or an email address",
        ),
        (
            lambda t: t.replace('hcp_name = ""', "hcp_name = 3"),
            "rems.hcp_name must be a string, got 3",
        ),
        (
            lambda t: t.replace("rems_certified = false", 'rems_certified = "yes"'),
            "rems.rems_certified must be true or false",
        ),
        (lambda t: t.replace("pmf_required = true\n", ""), "rems: missing 'pmf_required'"),
        (lambda t: t.replace("[observation]", "[observations]"), "unknown table or key"),
        (lambda t: t + "\n[[prompts\n", "not valid TOML"),
    ],
)
def test_bad_site_profiles_name_the_file_and_the_field(edit, message) -> None:  # type: ignore[no-untyped-def]
    changed = edit(DEFAULT)
    assert changed != DEFAULT
    with pytest.raises(SiteProfileError) as exc:
        parse_site_profile(changed, "site.toml")
    assert str(exc.value).startswith("site.toml: ")
    assert message in str(exc.value)


def test_load_site_profile_reads_the_shipped_default_or_a_named_file(tmp_path: Path) -> None:
    assert load_site_profile() == SiteProfile()
    path = tmp_path / "clinic.toml"
    path.write_text(DEFAULT.replace("audio_pause_min = 2", "audio_pause_min = 3"), "utf-8")
    assert load_site_profile(str(path)).audio_pause_s == 180
    path.write_text(DEFAULT.replace("audio_pause_min = 2", "audio_pause_min = 9"), "utf-8")
    with pytest.raises(SiteProfileError, match=r"clinic\.toml: alarms\.audio_pause_min"):
        load_site_profile(str(path))
    with pytest.raises(SiteProfileError, match="cannot read"):
        load_site_profile(str(tmp_path / "missing.toml"))


def test_rems_details_default_empty_and_are_read_from_the_site_file() -> None:
    p = parse_site_profile(DEFAULT, "site.toml")
    assert (p.hcp_name, p.setting_name, p.setting_zip, p.rems_certified) == ("", "", "", False)
    assert (p.pmf_deadline_days, p.pmf_warn_day, p.pmf_required) == (7, 5, True)
    assert isinstance(p.pmf_deadline_days, int)
    assert "§1.3" in p.source("pmf_deadline_days")
    filled = parse_site_profile(
        DEFAULT.replace('hcp_name = ""', 'hcp_name = "Rita Nurse, RN"')
        .replace('hcp_phone = ""', 'hcp_phone = "(415) 555-0100"')
        .replace('hcp_email = ""', 'hcp_email = "rems@clinic.example"')
        .replace('setting_state = ""', 'setting_state = "CA"')
        .replace('setting_zip = ""', 'setting_zip = "94110-1234"')
        .replace("rems_certified = false", "rems_certified = true")
        .replace("pmf_deadline_days = 7", "pmf_deadline_days = 10"),
        "site.toml",
    )
    assert filled.hcp_name == "Rita Nurse, RN" and filled.rems_certified is True
    assert filled.settings()["hcp_email"] == "rems@clinic.example"
    assert filled.settings()["pmf_deadline_days"] == 10


def test_the_security_table_is_optional_and_checked() -> None:
    from ketamon.domain.site import SiteProfile, SiteProfileError, parse_site_profile
    from ketamon.resources import read_text

    shipped = read_text("site.toml")
    start = shipped.index("[security]")
    end = shipped.index("\n[", start + 1) if "\n[" in shipped[start + 1 :] else len(shipped)
    without = shipped[:start] + shipped[end:]
    defaults = parse_site_profile(without, "old.toml")
    assert (defaults.idle_lock_min, defaults.lockout_failures, defaults.retention_years) == (
        SiteProfile().idle_lock_min,
        5,
        6,
    )
    bad = shipped.replace("retention_years = 6\n", "retention_years = 2\n")
    with pytest.raises(SiteProfileError, match=r"site.toml: security.retention_years"):
        parse_site_profile(bad, "site.toml")
