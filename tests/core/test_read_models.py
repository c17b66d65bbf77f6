"""Read models over the record: the session in words and in figures."""

from __future__ import annotations

from datetime import timedelta

from ketamon.core import commands as c
from ketamon.core.read_models import record_lines, session_figures
from tests.core.helpers import ALEX, ESK, make_chair, screening, start_and_dose


def test_figures_of_a_finished_session() -> None:
    chair = make_chair()
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))
    chair.do(c.RecordCadss({i: 0 for i in range(1, 24)}))
    chair.clock.advance(minutes=1)
    chair.do(screening((120, 80)))
    chair.do(c.LogDevice("L"))
    chair.clock.advance(minutes=5)
    chair.do(c.LogDevice("L"))
    t0 = chair.clock.now
    readings = [
        ("nibp_sys", 165.0, t0 + timedelta(minutes=40)),
        ("nibp_dia", 101.0, t0 + timedelta(minutes=40)),
        ("nibp_sys", 140.0, t0 + timedelta(minutes=60)),
        ("nibp_dia", 90.0, t0 + timedelta(minutes=60)),
        ("spo2", 93.0, t0 + timedelta(minutes=30)),
        ("spo2", 99.0, t0 + timedelta(minutes=31)),
        ("nibp_sys", 180.0, t0 - timedelta(minutes=20)),  # before dosing: not the peak
        ("nibp_dia", 99.0, t0 - timedelta(minutes=20)),
    ]
    chair.clock.advance(minutes=30)
    chair.do(c.RecordMoaas(3))
    chair.do(c.RecordCadss({**{i: 0 for i in range(1, 24)}, 1: 3, 2: 4}))
    s = chair.core.state
    assert s is not None
    f = session_figures(s, readings)
    assert f.peak_bp == (165.0, 101.0)
    assert f.peak_bp_rise == (45.0, 21.0)
    assert f.lowest_spo2 == 93.0
    assert f.lowest_moaas == 3
    assert (f.peak_cadss, f.cadss_change) == (7, 7)
    assert f.total_min is None  # not discharged yet


def test_the_record_in_words_keeps_the_order_and_shows_corrections() -> None:
    chair = make_chair()
    start_and_dose(chair)
    out = chair.do(c.RecordMoaas(2))
    chair.do(c.Correct(out.entries[0].id, {"score": 4}, "scored the wrong patient"))
    lines = record_lines(chair.core.entries)
    assert [x.entry_id for x in lines] == sorted(x.entry_id for x in lines)
    text = [f"{x.label}: {x.text}" for x in lines]
    assert any(t.startswith("Esketamine device: device 2") for t in text)
    assert any("score 2 → 4 — reason: scored the wrong patient" in t for t in text)


def test_every_kind_has_words() -> None:
    from ketamon.core.read_models import KIND_LABELS
    from ketamon.domain.record import EntryKind

    assert set(KIND_LABELS) == set(EntryKind)
