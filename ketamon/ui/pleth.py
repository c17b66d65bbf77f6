"""A small plethysmogram strip: the last few seconds, redrawn on a timer when visible."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

from ketamon.presenters.views import WaveBuffer
from ketamon.ui import theme

REDRAW_HZ = 20


class PlethStripWidget(pg.PlotWidget):  # type: ignore[misc]
    def __init__(self, buffer: WaveBuffer, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background=theme.BACKGROUND)
        self.buffer = buffer
        self.setFixedHeight(40)  # a shape to glance at: the flags need the room
        self.hideAxis("bottom")
        self.hideAxis("left")
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setToolTip("Pleth (SpO₂ waveform)")
        self.curve = self.plot(pen=pg.mkPen(theme.PARAMETER_COLOURS["spo2"], width=1))
        n = buffer.capacity
        self.setXRange(0, n, padding=0)
        self.setYRange(-0.05, 1.1, padding=0)
        self._x = np.arange(n, dtype=np.float64)
        self._drawn = -1
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REDRAW_HZ))
        self._timer.timeout.connect(self._on_timer_timeout)
        self.redraws = 0

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _on_timer_timeout(self) -> None:
        if not self.isVisible() or self.buffer.version == self._drawn:
            return
        self._drawn = self.buffer.version
        v = self.buffer.snapshot()
        self.curve.setData(self._x[: len(v)], v)
        self.redraws += 1
