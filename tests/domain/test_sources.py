"""Primary measurement source per site setting (issue 16): ketamon.domain.sources and the
[sources] table of site.toml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.readings import Quality, Reading, make_reading
from ketamon.domain.site import SiteProfile, SiteProfileError, parse_site_profile
from ketamon.domain.sources import (
    DEFAULT_PREFERENCES,
    SourcePolicy,
    SourceSelector,
    SourceSettingError,
    policy_from_table,
)
from ketamon.resources import read_text
from ketamon.site_settings import load_site_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def r(param: str, value: float, s: float, origin: str, channel: str = "") -> Reading:
    return make_reading(param, value, T0 + timedelta(seconds=s), origin=origin, channel=channel)


def names(rs: list[Reading]) -> list[tuple[str, str, str]]:
    return [(x.parameter, x.origin, x.channel) for x in rs]


def test_the_preferred_origin_wins_and_the_others_are_kept_apart() -> None:
    sel = SourceSelector()
    primary, other = sel.split(
        [r("rr", 15, 0, "impedance"), r("rr", 14, 0, "co2"), r("rr", 16, 0, "acoustic")]
    )
    assert names(primary) == [("rr", "co2", "")]
    assert names(other) == [("rr", "impedance", ""), ("rr", "acoustic", "")]
    assert sel.primary_origin("rr", T0) == ("co2", "")


def test_a_lost_source_hands_over_after_hold_s_and_takes_over_again() -> None:
    sel = SourceSelector(SourcePolicy(hold_s=30))
    assert names(sel.split([r("rr", 14, 0, "co2"), r("rr", 15, 0, "impedance")])[0]) == [
        ("rr", "co2", "")
    ]
    # the capnograph line is off: impedance is still second for 30 s, then charted
    assert sel.split([r("rr", 15, 29, "impedance")])[0] == []
    assert names(sel.split([r("rr", 15, 31, "impedance")])[0]) == [("rr", "impedance", "")]
    # CO2 back: it takes over at once, impedance goes back to being stored only
    primary, other = sel.split([r("rr", 13, 40, "co2"), r("rr", 15, 40, "impedance")])
    assert names(primary) == [("rr", "co2", "")] and names(other) == [("rr", "impedance", "")]


def test_two_spo2_channels_lowest_containment_id_first_or_as_the_site_says() -> None:
    batch = [r("spo2", 94, 0, "pleth", "1.10.1.1"), r("spo2", 97, 0, "pleth", "1.2.1.1")]
    assert names(SourceSelector().split(batch)[0]) == [("spo2", "pleth", "1.2.1.1")]
    policy = SourcePolicy(channels={"spo2": ("1.10.1.1",)})
    assert names(SourceSelector(policy).split(batch)[0]) == [("spo2", "pleth", "1.10.1.1")]


def test_manual_entries_and_unlisted_parameters_are_always_primary() -> None:
    sel = SourceSelector()
    manual = make_reading("hr", 90, T0, quality=Quality.MANUAL, origin="manual")
    nibp = r("nibp_sys", 120, 0, "cuff")
    primary, other = sel.split([r("hr", 70, 0, "ecg"), manual, nibp])
    assert len(primary) == 3 and other == []


def test_unknown_origin_ranks_after_the_listed_ones() -> None:
    sel = SourceSelector()
    primary, _ = sel.split([r("temp", 36.0, 0, ""), r("temp", 33.0, 0, "skin")])
    assert names(primary) == [("temp", "skin", "")]


# ---- the [sources] table --------------------------------------------------------------------
def test_shipped_site_toml_carries_the_default_policy_with_sources() -> None:
    site = load_site_profile()
    assert site.primary_sources == SourcePolicy.default() == SiteProfile().primary_sources
    assert dict(site.primary_sources.preferences) == DEFAULT_PREFERENCES
    for key in ("hr", "pr", "spo2", "rr", "temp", "hold_s", "spo2_channels"):
        assert site.source(f"sources.{key}").strip()
    assert site.settings()["primary_sources"]["rr"][0] == "co2"  # JSON-ready, recorded


def test_a_site_may_prefer_impedance_rr_and_a_spo2_channel() -> None:
    text = read_text("site.toml")
    text = text.replace(
        'rr = ["co2", "airway", "impedance", "acoustic", "pleth", "unspecified"]',
        'rr = ["impedance", "co2"]',
    ).replace("spo2_channels = []", 'spo2_channels = ["1.3.1.1"]')
    site = parse_site_profile(text, "site.toml")
    assert site.primary_sources.preferences["rr"] == ("impedance", "co2")
    assert site.primary_sources.channels == {"spo2": ("1.3.1.1",)}


def test_a_file_without_the_sources_table_keeps_the_defaults() -> None:
    text = read_text("site.toml").split("\n[sources]")[0]
    assert parse_site_profile(text, "site.toml").primary_sources == SourcePolicy.default()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"rr": ["co2", "nose"], "rr_source": "x"},
            "sources.rr has 'nose', which is not an origin",
        ),
        ({"rr": ["co2", "co2"], "rr_source": "x"}, "sources.rr names 'co2' twice"),
        ({"rr": [], "rr_source": "x"}, "sources.rr must be a non-empty list"),
        ({"rr": ["co2"]}, "missing 'rr_source'"),
        ({"bp": ["cuff"], "bp_source": "x"}, "unknown setting 'bp'"),
        ({"hold_s": 1, "hold_s_source": "x"}, "sources.hold_s must be within 5–600 s, got 1"),
        ({"spo2_channels": ["1..2"], "spo2_channels_source": "x"}, "not a channel id"),
    ],
)
def test_bad_sources_settings_name_the_setting(table: dict[str, object], message: str) -> None:
    with pytest.raises(SourceSettingError, match=message.replace("(", r"\(")):
        policy_from_table(table, "site.toml")


def test_a_bad_sources_table_is_a_site_profile_error_naming_the_file() -> None:
    text = read_text("site.toml").replace('hr = ["ecg",', 'hr = ["ekg",')
    with pytest.raises(SiteProfileError, match=r"site.toml: sources.hr has 'ekg'"):
        parse_site_profile(text, "site.toml")
