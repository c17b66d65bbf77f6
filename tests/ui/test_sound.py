"""Alarm sounds: priority-encoded patterns, and a clear notice when sound cannot play."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from ketamon.domain.thresholds import Priority
from ketamon.ui.alarm_panel import AlarmPanel
from ketamon.ui.sound import AlarmSounder

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


def test_audio_paused_silences_new_flags(qtbot) -> None:  # type: ignore[no-untyped-def]
    heard: list[Priority] = []
    panel = AlarmPanel(list, heard.append)
    qtbot.addWidget(panel)
    panel.announce("spo2", Priority.MEDIUM)
    assert heard == [Priority.MEDIUM]
    panel.pause_button.click()
    assert panel.audio_paused and "AUDIO PAUSED 1:5" in panel.pause_button.text()
    panel.announce("hr", Priority.HIGH)
    assert heard == [Priority.MEDIUM]
    panel.pause_button.click()
    panel.announce("hr", Priority.HIGH)
    assert heard == [Priority.MEDIUM, Priority.HIGH]
