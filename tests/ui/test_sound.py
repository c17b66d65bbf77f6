"""Alarm sounds: priority-encoded patterns, and a clear notice when sound cannot play."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from ketamon.domain.thresholds import Priority
from ketamon.ui.alarm_panel import AlarmPanel
from ketamon.ui.sound import AlarmSounder

from .conftest import Rig

SOUNDS = Path(__file__).resolve().parents[2] / "resources" / "sounds"


def pulses(path: Path) -> int:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    win = rate // 100  # 10 ms windows
    loud = [
        max(abs(x) for x in samples[i : i + win]) > 3000 for i in range(0, len(samples) - win, win)
    ]
    return sum(1 for a, b in zip([False, *loud], loud, strict=False) if b and not a)


@pytest.mark.parametrize(("name", "count"), [("high", 10), ("medium", 3), ("low", 2)])
def test_sound_patterns_are_priority_encoded(name: str, count: int) -> None:
    assert pulses(SOUNDS / f"{name}.wav") == count


def test_sounder_says_why_it_is_silent_or_plays(qtbot) -> None:  # type: ignore[no-untyped-def]
    sounder = AlarmSounder()
    try:
        if sounder.available:
            assert sounder.status == "Alarm sounds on"
        else:
            assert sounder.status.startswith("Alarm sounds off: ")
            assert "QtMultimedia" in sounder.status or "audio output" in sounder.status
        sounder.play(Priority.HIGH)
        assert sounder.played == [Priority.HIGH]
    finally:
        sounder.close()


def test_audio_paused_silences_new_flags_until_a_high_priority_one(qtbot) -> None:  # type: ignore[no-untyped-def]
    heard: list[Priority] = []
    panel = AlarmPanel(list, heard.append)
    qtbot.addWidget(panel)
    panel.announce("spo2_low", Priority.MEDIUM)
    assert heard == [Priority.MEDIUM]
    panel.pause_button.click()
    assert panel.audio_paused and "AUDIO PAUSED 1:5" in panel.pause_button.text()
    panel.announce("hr_high", Priority.MEDIUM)
    panel.announce("tech_link", Priority.LOW)
    assert heard == [Priority.MEDIUM]  # paused
    # A new high-priority flag ends the pause at once and is heard (deliberate: high priority
    # is never silenced by a pause that began before it).
    panel.announce("moaas", Priority.HIGH)
    assert heard == [Priority.MEDIUM, Priority.HIGH]
    assert not panel.audio_paused and not panel.pause_button.isChecked()
    assert panel.pause_button.text() == "⊘ AUDIO PAUSED"
    panel.announce("hr_high", Priority.MEDIUM)
    assert heard == [Priority.MEDIUM, Priority.HIGH, Priority.MEDIUM]
    # paused again by hand, and resumed by hand
    panel.pause_button.click()
    panel.announce("rr_high", Priority.MEDIUM)
    panel.pause_button.click()
    panel.announce("rr_high", Priority.MEDIUM)
    assert heard == [Priority.MEDIUM, Priority.HIGH, Priority.MEDIUM, Priority.MEDIUM]


def _reading(presenter, parameter: str, value: float):  # type: ignore[no-untyped-def]
    from devices.readings import make_reading

    return make_reading(parameter, value, presenter.now(), source="test")


def test_chair_audio_pause_ends_on_a_new_high_priority_flag(rig: Rig) -> None:
    """At the chair: AUDIO PAUSED silences a monitor flag; MOAA/S 1 (high) ends the pause and
    is heard through the station's sounder."""
    view = rig.view(1)
    model = view.model
    rig.show(view)
    start = rig.open(view, "start")
    for field, text in ((start.mrn, "SND-1"), (start.first, "Sol"), (start.last, "Sound")):
        rig.qtbot.keyClicks(field, text)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    sounder = rig.window.sounder
    assert sounder is not None
    model._acq.stop()  # no simulated reading may clear the flag under the test's feet
    rig.settle()
    rig.click(view.alarm_panel.pause_button)
    assert view.alarm_panel.audio_paused
    n = len(sounder.played)
    model._acq.inject([_reading(model, "spo2", 85)])  # a monitor reading: SpO2 low (medium)
    rig.settle()
    assert "spo2_low" in {a.key for a in model.active_alarms()}
    assert any("SpO" in t for t in view.alarm_panel.texts())
    assert sounder.played[n:] == []  # paused
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[1]) == ""
    assert not view.alarm_panel.audio_paused and not view.alarm_panel.pause_button.isChecked()
    assert sounder.played[n:] == [Priority.HIGH]


def test_a_monitor_flag_is_sounded_once(rig: Rig) -> None:
    view = rig.view(1)
    model = view.model
    start = rig.open(view, "start")
    for field, text in ((start.mrn, "SND-2"), (start.first, "Sol"), (start.last, "Sound")):
        rig.qtbot.keyClicks(field, text)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    sounder = rig.window.sounder
    assert sounder is not None
    # the simulated monitor stops first: its next normal SpO2 must not clear the flag before
    # it is looked at (a race that made this test fail now and then)
    model._acq.stop()
    rig.settle()
    n = len(sounder.played)
    model._acq.inject([_reading(model, "spo2", 85)])
    rig.settle()
    assert "spo2_low" in (model.state.alarms if model.state else {})  # recorded
    assert sounder.played[n:] == [Priority.MEDIUM]
