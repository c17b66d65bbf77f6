"""Priority-encoded alarm sounds (high: 10-pulse burst, medium: 3 pulses, low: 2 pulses).

Sound needs QtMultimedia (the PySide6-Addons wheel: ``pip install 'ketamon[sound]'``) and an
audio output. Without either, ketamon keeps working silently and says so on screen: its flags
are advisory, the bedside monitor's alarms are the ones that must be heard.
"""

from __future__ import annotations

import contextlib
import logging
from importlib.resources import as_file
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QUrl

from ketamon.domain.thresholds import Priority
from ketamon.resources import resource

log = logging.getLogger(__name__)


class AlarmSounder(QObject):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.available = False
        self.reason = ""
        self.played: list[Priority] = []  # what was asked to sound (also when silent)
        self._effects: dict[Priority, Any] = {}
        self._stack = contextlib.ExitStack()
        try:
            from PySide6.QtMultimedia import QMediaDevices, QSoundEffect
        except ImportError:
            self.reason = (
                "Alarm sounds off: QtMultimedia is not installed (pip install 'ketamon[sound]')"
            )
            return
        if not QMediaDevices.audioOutputs():
            self.reason = "Alarm sounds off: no audio output device"
            return
        for prio in Priority:
            path: Path = self._stack.enter_context(
                as_file(resource("sounds", f"{prio.name.lower()}.wav"))
            )
            effect = QSoundEffect(self)
            effect.setSource(QUrl.fromLocalFile(str(path)))
            effect.setVolume(0.8)
            self._effects[prio] = effect
        self.available = True

    @property
    def status(self) -> str:
        return "Alarm sounds on" if self.available else self.reason

    def play(self, priority: Priority) -> None:
        self.played.append(priority)
        effect = self._effects.get(priority)
        if effect is not None:
            effect.play()

    def close(self) -> None:
        for effect in self._effects.values():
            effect.stop()
        self._stack.close()
