"""The chair screen as nurses use it: a session driven from the keyboard alone, four flags
readable at 1366×768, a cable pull, a typed BP beside the monitor's, the CADSS form, the
banner for another chair's high flag, and the overview as a central station.

The screenshots (out/screens/, named in the README) are written here for a person to look at,
at 1366×768 and 1920×1080."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from devices.clock import ManualClock
from devices.readings import make_reading
from ketamon.app import build_window, make_station
from ketamon.config import ChairConfig, Config
from ketamon.domain.record import EntryKind, PatientInfo, Plan
from ketamon.domain.session_rules import Treatment
from ketamon.paths import AppPaths
from ketamon.services import load_profile
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.panels import CadssPanel, EntriesPanel, StartSessionPanel

from .conftest import SCREEN, Rig

BIG = (1920, 1080)


# ---- the keyboard ------------------------------------------------------------------------------
def _focus() -> QWidget:
    w = QApplication.focusWidget()
    assert w is not None, "nothing has the keyboard focus"
    return w


def _press(
    rig: Rig, key: Qt.Key, mod: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
) -> None:
    rig.qtbot.keyClick(_focus(), key, mod)
    QApplication.processEvents()


def _type(rig: Rig, text: str) -> None:
    rig.qtbot.keyClicks(_focus(), text)


def _enter(rig: Rig, view: ChairViewWidget) -> None:
    """Enter in the open form, then wait for the entry to be recorded."""
    key = view.current_panel()
    assert key is not None
    panel = view.panels[key]
    before = panel.saving
    _press(rig, Qt.Key.Key_Return)
    if panel.saving is not None and panel.saving is not before:
        panel.saving.wait()
    rig.settle()


def test_a_session_from_the_keyboard_alone(rig: Rig) -> None:
    view = rig.view(0)
    model = view.model
    rig.qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)
    # Ctrl+1 shows Chair 1 and puts the focus in it: the F-keys work at once
    _press(rig, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert rig.window.tabs.currentWidget() is view and view.isAncestorOf(_focus())

    # F1: the start form, typing goes into its search field; ↓ picks the patient
    _press(rig, Qt.Key.Key_F1)
    start = view.panels["start"]
    assert isinstance(start, StartSessionPanel) and _focus() is start.search
    _type(rig, "DEMO-0001")
    rig.qtbot.waitUntil(lambda: start.results.count() == 1, timeout=5000)
    _press(rig, Qt.Key.Key_Down)
    assert start.last.text() == "Demo"
    # the wheel over the Sex box (not focused) scrolls the form, never changes the answer
    sex = start.sex.currentIndex()
    wheel = QWheelEvent(
        QPointF(5, 5),
        QPointF(start.sex.mapToGlobal(QPoint(5, 5))),
        QPoint(0, 0),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(start.sex, wheel)
    assert start.sex.currentIndex() == sex
    _press(rig, Qt.Key.Key_I, Qt.KeyboardModifier.AltModifier)  # identity checked
    assert start.confirm.isChecked()
    _enter(rig, view)
    assert model.state is not None and model.state.patient.mrn == "DEMO-0001"
    assert view.current_panel() is None and view.isAncestorOf(_focus())

    # F8: pre-dose screening typed in, Tab from field to field, Alt+F / Alt+E, Enter
    _press(rig, Qt.Key.Key_F8)
    scr = view.panels["screening"]
    assert _focus() is scr.sys
    for text in ("124", "80", "72"):
        _type(rig, text)
        _press(rig, Qt.Key.Key_Tab)
    _press(rig, Qt.Key.Key_F, Qt.KeyboardModifier.AltModifier)
    _press(rig, Qt.Key.Key_E, Qt.KeyboardModifier.AltModifier)
    _enter(rig, view)
    assert scr.error.text() == "" and model.state.screening is not None
    assert model.state.screening.bp == (124, 80)

    # F2: device 1 (the lot is the first field), Enter; the header counts down to device 2
    _press(rig, Qt.Key.Key_F2)
    dose = view.panels["dose"]
    assert _focus() is dose.lot
    _type(rig, "LOT-K1")
    _enter(rig, view)
    assert model.state.first_dose is not None
    assert "Device 2 of 2 in 5:00" in view.dose_label.text()
    rig.advance(5)
    rig.qtbot.waitUntil(lambda: "Device 2 of 2: ready now" in view.dose_label.text())
    _press(rig, Qt.Key.Key_F2)
    _type(rig, "LOT-K1")
    _enter(rig, view)
    assert len(model.state.devices) == 2 and view.dose_label.text() == ""

    # F3 and a digit: MOAA/S
    _press(rig, Qt.Key.Key_F3)
    _press(rig, Qt.Key.Key_4)
    if view.panels["moaas"].saving is not None:
        view.panels["moaas"].saving.wait()
    rig.settle()
    assert model.state.latest_moaas == 4 and view.current_panel() is None

    # F4: CADSS — two items scored by digit, the rest "all 0" (Alt+A), Enter
    _press(rig, Qt.Key.Key_F4)
    cadss = view.panels["cadss"]
    assert isinstance(cadss, CadssPanel) and cadss.current_item == 1
    _press(rig, Qt.Key.Key_2)
    assert cadss.items() == {1: 2} and cadss.current_item == 2
    _press(rig, Qt.Key.Key_Down)
    _press(rig, Qt.Key.Key_1)
    assert cadss.items() == {1: 2, 3: 1}
    _press(rig, Qt.Key.Key_A, Qt.KeyboardModifier.AltModifier)
    assert len(cadss.items()) == 23
    _enter(rig, view)
    cadss_obs = model.state.live(EntryKind.CADSS)
    assert cadss_obs and cadss_obs[-1].score == 3

    # F6: a note; Enter is a new line there, Ctrl+Enter saves
    _press(rig, Qt.Key.Key_F6)
    _type(rig, "Resting")
    _press(rig, Qt.Key.Key_Return)
    _type(rig, "eyes closed")
    note_panel = view.panels["note"]
    _press(rig, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    if note_panel.saving is not None:
        note_panel.saving.wait()
    rig.settle()
    assert model.state.live(EntryKind.NOTE)[-1].text == "Resting\neyes closed"

    # Esc always goes back to the chart, from any form
    for key in (Qt.Key.Key_F2, Qt.Key.Key_F7, Qt.Key.Key_F5, Qt.Key.Key_F11):
        _press(rig, key)
        assert view.current_panel() is not None
        _press(rig, Qt.Key.Key_Escape)
        assert view.current_panel() is None and view.isAncestorOf(_focus())

    # F11: the Entries list has everything, filterable by kind
    _press(rig, Qt.Key.Key_F11)
    entries = view.panels["entries"]
    assert isinstance(entries, EntriesPanel)
    lines = entries.shown_lines()
    for text in (
        "Esketamine device: device 1",
        "lot LOT-K1",
        "Pre-dose screening: BP 124/80",
        "MOAA/S: 4",
        "CADSS: total 3",
        "Note: Resting",
    ):
        assert any(text in line for line in lines), (text, lines)
    entries.kind_filter.setCurrentText("Doses")
    assert entries.shown_lines() and all(
        "device" in line or "Session started" in line for line in entries.shown_lines()
    )
    _press(rig, Qt.Key.Key_Escape)

    # at 40 min the BP rise is flagged: Ctrl+K acknowledges the most urgent flag alone
    rig.advance(36)
    rig.qtbot.waitUntil(lambda: len(model.active_alarms()) >= 2, timeout=10000)
    if view.current_panel() is not None:  # the symptom check opened itself
        _press(rig, Qt.Key.Key_Escape)
    first = view.alarm_panel.most_urgent_unacknowledged()
    _press(rig, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    rig.settle()
    assert {a.key for a in model.active_alarms() if a.acknowledged} == {first}
    _press(
        rig, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    rig.settle()
    assert all(a.acknowledged for a in model.active_alarms())


# ---- flags, numerics, forms: and the screenshots ---------------------------------------------
def _start_other(rig: Rig, view: ChairViewWidget, mrn: str) -> None:
    p = view.model.start_session(
        PatientInfo(None, mrn, "Flo", "Flags"), Plan(Treatment.OTHER), confirmed=True
    )
    assert p.wait().ok, p.reasons
    rig.settle()


def _shots(rig: Rig, name: str) -> None:
    for size in (SCREEN, BIG):
        rig.window.resize(*size)
        QApplication.processEvents()
        rig.shot(f"{name}-{size[0]}x{size[1]}")
    rig.window.resize(*SCREEN)
    QApplication.processEvents()


def test_four_flags_readable_a_cable_pull_a_typed_bp_and_the_banner(rig: Rig) -> None:
    view = rig.view(1)  # Chair 2
    model = view.model
    rig.show(view)
    # before any session: the monitor's last 30 min on a clock-time axis, no session marks
    rig.advance(3, step_s=20)
    view.chart.redraw(force=True)
    assert view.chart.clock_mode() and "clock time" in view.chart._x_label
    axis = view.chart.plots["rr"].getAxis("bottom")
    assert axis.tickStrings([0.0], 1.0, 1.0)[0].count(":") == 1  # HH:MM
    _shots(rig, "chair-0-before-session-clock-axis")

    _start_other(rig, view, "FLAG-1")
    p = model.record_screening(
        bp=(124, 80),
        hr=70,
        bp_source="manual",
        fasting=True,
        escort=True,
        rems_enrolled=None,
        medicines={},
    )
    assert p.wait().ok, p.reasons
    assert model.log_other_treatment("Ketamine 35 mg IM").wait().ok
    rig.advance(1, step_s=10)
    rig.qtbot.waitUntil(lambda: "spo2" in model.monitor_latest(), timeout=5000)
    model._acq.stop()  # the cable is pulled: nothing more comes from the monitor
    rig.settle()
    # the monitor's last SpO2 (stale now) stays apart from what is typed
    hr_tile = view.numerics.tiles["hr"]
    rig.advance(0.25, step_s=15)  # 15 s: the continuous values are grey, with their age
    view._refresh_view()
    assert view.numerics.tiles["spo2"].stale and "s ago" in view.numerics.tiles["spo2"].unit.text()
    rig.advance(0.5, step_s=15)  # past the site's limit: "--"
    view._refresh_view()
    assert view.numerics.tiles["spo2"].value.text() == "--"
    assert "last" in view.numerics.tiles["spo2"].unit.text()
    _shots(rig, "chair-1-cable-pull")
    # an implausible value (issue 11's plausibility check) is shown as an artifact, not a value
    model._acq.inject([make_reading("spo2", 250, model.now())])
    rig.settle()
    view._refresh_view()
    spo2_tile = view.numerics.tiles["spo2"]
    assert spo2_tile.value.text() == "--" and "artifact" in spo2_tile.unit.text()
    assert "spo2" not in model.monitor_latest() or model.monitor_latest()["spo2"][0].value != 250

    # a BP typed by hand (175/105 after 124/80): four flags, and a high one (MOAA/S 1)
    assert model.record_manual_vitals({"nibp_sys": 175, "nibp_dia": 105}).wait().ok
    assert model.record_moaas(1).wait().ok
    rig.settle()
    if view.current_panel() is not None:
        view.show_chart()  # the symptom check opened itself: back to the chart for the look
    view._refresh_view()
    view.alarm_panel.refresh()
    texts = view.alarm_panel.texts()
    assert len(texts) >= 5, texts
    assert texts[0].startswith("*** HIGH: MOAA/S 1")
    assert any("SYS 175 > 160" in t for t in texts), texts
    assert any("SYS 175: rise +51 over baseline 124" in t for t in texts), texts
    assert all(" · 09:" in t or " · 1" in t or ":" in t.split("·")[-1] for t in texts)
    nibp = view.numerics.tiles["nibp"]
    assert nibp.manual and nibp.mark.isVisible() and nibp.value.text() == "175/105"  # no mean
    assert "by hand" in nibp.unit.text()
    assert hr_tile.value.text() in ("--", "70")  # typed at screening, or blank: never stale-live
    view.chart.redraw(force=True)
    assert view.chart.manual_point_count("bp") == 4  # screening and the typed BP, sys and dia

    # at least four flags fully visible at 1366×768, without scrolling
    QApplication.processEvents()
    viewport = view.alarm_panel.scroll_area.viewport()
    visible = [
        r for r in view.alarm_panel.rows if viewport.rect().contains(r.geometry().translated(0, 0))
    ]
    assert len(visible) >= 4, [r.geometry() for r in view.alarm_panel.rows]
    # ACK one flag: the others stay unacknowledged
    row = next(r for r in view.alarm_panel.rows if "SYS 175 > 160" in r.text())
    rig.click(row.ack)
    rig.settle()
    acked = {a.key for a in model.active_alarms() if a.acknowledged}
    assert acked == {"nibp_sys_high"}, acked
    # AUDIO PAUSED shows its countdown in full
    rig.click(view.alarm_panel.pause_button)
    text = view.alarm_panel.pause_button.text()
    assert text.startswith("⊘ AUDIO PAUSED ") and text.endswith(("2:00", "1:59"))
    assert view.alarm_panel.pause_button.fontMetrics().horizontalAdvance(text) < (
        view.alarm_panel.pause_button.width()
    )
    _shots(rig, "chair-2-flags-manual-bp")

    # another chair's screen shows the high flag in a banner; one click goes there
    rig.show(rig.view(0))
    rig.window.refresh_alert_banner()
    banner = rig.window.alert_banner
    assert banner.isVisible() and "Chair 2" in banner.text() and "MOAA/S 1" in banner.text()
    _shots(rig, "chair-3-banner-for-another-chair")
    rig.click(banner)
    assert rig.window.tabs.currentWidget() is view and not banner.isVisible()

    # the CADSS form: scrolled down last time, it opens at the top again
    cadss = rig.open(view, "cadss")
    cadss.select_item(23)
    assert cadss.scroll_area.verticalScrollBar().value() > 0
    rig.click(cadss.cancel_button)
    cadss = rig.open(view, "cadss")
    assert cadss.scroll_area.verticalScrollBar().value() == 0 and cadss.current_item == 1
    rig.click(cadss.all_zero_button)
    _shots(rig, "chair-4-cadss")
    rig.click(cadss.cancel_button)


def test_entered_in_error_is_a_correction_shown_old_to_new(rig: Rig) -> None:
    view = rig.view(1)
    model = view.model
    rig.show(view)
    _start_other(rig, view, "ERR-1")
    assert model.record_moaas(3).wait().ok
    rig.settle()
    entries = rig.open(view, "entries")
    rows = [entries.list.item(i).text() for i in range(entries.list.count())]
    entries.list.setCurrentRow(next(i for i, t in enumerate(rows) if "MOAA/S: 3" in t))
    entries.in_error.setChecked(True)
    rig.qtbot.keyClicks(entries.reason, "wrong chair")
    assert rig.save(entries) == ""
    assert model.state.live(EntryKind.MOAAS) == []
    entries = rig.open(view, "entries")
    entries.kind_filter.setCurrentText("Corrections")
    lines = entries.shown_lines()
    assert len(lines) == 1 and "entered in error — wrong chair" in lines[0]
    assert "Demo Nurse" in lines[0]


# ---- the overview with 8 chairs --------------------------------------------------------------
@pytest.fixture
def station8(qtbot, db_paths: AppPaths) -> Callable[[], Rig]:  # type: ignore[no-untyped-def]
    made: list[Rig] = []

    def build() -> Rig:
        clock = ManualClock()
        scenarios = ("stable", "bp_rise", "desaturation", "stable") * 2
        chairs = tuple(
            ChairConfig(name=f"Chair {i + 1}", protocol="simulator", scenario=sc)
            for i, sc in enumerate(scenarios)
        )
        config = Config(chairs=chairs)
        station = make_station(
            db_paths, config, load_profile(config), db_paths.sqlite_url(), demo=False, clock=clock
        )
        station.prepare_demo()  # the demo users; the demo nurse signed in
        window = build_window(station, "ketamon — 8 chairs")
        qtbot.addWidget(window)
        window.resize(*SCREEN)
        station.start()
        window.show()
        qtbot.waitExposed(window)
        rig = Rig(qtbot, station, window, clock)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.window.close()
        rig.station.shutdown()


def test_the_overview_shows_eight_chairs_vitals_and_flags_at_a_glance(
    station8: Callable[[], Rig],
) -> None:
    rig = station8()
    models = rig.station.models
    assert len(models) == 8
    for i, m in enumerate(models[:6]):
        assert (
            m.start_session(
                PatientInfo(None, f"OV-{i}", "Pat", f"Number{i}"),
                Plan(Treatment.ESKETAMINE, dose_mg=84.0) if i % 2 else Plan(Treatment.OTHER),
                confirmed=True,
            )
            .wait()
            .ok
        )
    for i, m in enumerate(models[:6]):
        assert (
            m.record_screening(
                bp=(124, 80),
                hr=70,
                bp_source="manual",
                fasting=True,
                escort=True,
                rems_enrolled=True if i % 2 else None,
                medicines={},
            )
            .wait()
            .ok
        )
        if i % 2:
            assert m.log_esketamine_device("LOT-OV").wait().ok
        else:
            assert m.log_other_treatment("Ketamine 35 mg IM").wait().ok
    rig.settle()
    rig.advance(35, step_s=60)
    assert models[2].record_moaas(1).wait().ok  # a high flag somewhere
    rig.settle()
    rig.window.tabs.setCurrentIndex(0)
    overview = rig.window.overview
    assert overview is not None
    rig.window._on_overview_timer_timeout()
    overview.refresh()  # every card now (they refresh a few at a time while shown)
    QApplication.processEvents()
    cards = overview.cards
    # the cards fill the window: 4 columns × 2 rows, most of its area
    area = sum(c.width() * c.height() for c in cards)
    assert area > 0.6 * overview.width() * overview.height()
    texts = [c.vitals.text() for c in cards]
    assert all("BP" in t and "HR" in t and "SpO₂" in t and "RR" in t for t in texts)
    assert "MOAA/S 1" in cards[2].flag.text and cards[2].flag.priority is not None
    assert cards[2].flag.priority.name == "HIGH"
    assert any("2 h in" in c.lines.text() for c in cards)
    assert all(c.trend.line_count() > 0 for c in cards)
    assert "Next:" in cards[0].next.text()
    _shots(rig, "overview-8-chairs")
    # the flashing: a high flag's strip is lit and dark within a second
    seen = set()
    for _ in range(12):
        rig.qtbot.wait(100)
        seen.add(cards[2].flag.lit)
    assert seen == {True, False}
    # a device countdown shows on its card: chair 2 gave device 1 of 3 at T+0 (35 min ago)
    assert "Device 2 of 3" in cards[1].dose.text()
