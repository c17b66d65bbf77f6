"""Large latest-value tiles, readable from the door. A flagged value shows its priority marker and
word as well as its colour. A stale value (older than its parameter's maximum age: about 10 s for
the continuous numerics, the cuff interval plus grace for NIBP) is greyed and shows its age."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from ketamon.domain.technical import max_ages, stale_parameters
from ketamon.domain.thresholds import Priority
from ketamon.presenters.views import Reading
from ketamon.ui import theme

TILES = (
    ("nibp", "NIBP", "mmHg"),
    ("hr", "HR", "/min"),
    ("spo2", "SpO₂", "%"),
    ("rr", "RR", "/min"),
)
#: a value too old to be current: still readable, plainly not live
STALE_COLOUR = "#7c838a"


class NumericTile(QFrame):
    def __init__(self, key: str, title: str, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("numericTile")
        self.key = key
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(0)
        self.name = QLabel(title)
        self.name.setObjectName("numericName")
        self.value = QLabel("--")
        self.value.setObjectName("numericValue")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.value.setStyleSheet(f"color: {theme.PARAMETER_COLOURS.get(key, '#e0e0e0')}")
        self.unit = QLabel(unit)
        self.unit.setObjectName("numericUnit")
        self.unit.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.flag = QLabel("")
        self.flag.setObjectName("numericFlag")
        for w in (self.name, self.value, self.unit, self.flag):
            lay.addWidget(w)
        self._base_colour = theme.PARAMETER_COLOURS.get(key, "#e0e0e0")
        self.stale = False
        self._shown: tuple[str, str, Priority | None, bool] | None = None

    def show_value(
        self, text: str, subtitle: str, priority: Priority | None, *, stale: bool = False
    ) -> None:
        shown = (text, subtitle, priority, stale)
        if shown == self._shown:
            return  # twice a second for every chair: restyling is costly, do it on a change
        restyle = self._shown is None or self._shown[2:] != shown[2:]
        self._shown = shown
        self.stale = stale
        self.value.setText(text)
        self.unit.setText(subtitle)
        if not restyle:
            return
        if priority is None:
            self.flag.setText("")
            self.value.setStyleSheet(f"color: {STALE_COLOUR if stale else self._base_colour}")
            self.setStyleSheet("")
        else:
            colour = theme.PRIORITY_COLOURS[priority]
            self.flag.setText(f"{priority.marker} {theme.PRIORITY_TEXT[priority]}")
            self.flag.setStyleSheet(f"color: {colour}")
            self.value.setStyleSheet(f"color: {STALE_COLOUR if stale else colour}")
            self.setStyleSheet(f"QFrame#numericTile {{ border: 3px solid {colour}; }}")


def _ago(r: Reading, now: datetime) -> str:
    s = int((now - r.host_time).total_seconds())
    if s < 90:
        return f"{max(s, 0)} s ago"
    return f"{s // 60} min ago"


class NumericsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        self.tiles = {key: NumericTile(key, title, unit) for key, title, unit in TILES}
        # NIBP across the top; HR, SpO2 and RR side by side below: readable from the door
        # and still fitting a 1366x768 screen.
        grid.addWidget(self.tiles["nibp"], 0, 0, 1, 3)
        grid.addWidget(self.tiles["hr"], 1, 0)
        grid.addWidget(self.tiles["spo2"], 1, 1)
        grid.addWidget(self.tiles["rr"], 1, 2)

    def update_values(
        self,
        latest: dict[str, tuple[Reading, int]],
        now: datetime,
        *,
        nibp_interval_min: float = 15.0,
    ) -> None:
        stale = stale_parameters(
            {k: r.host_time for k, (r, _) in latest.items()}, now, max_ages(nibp_interval_min)
        )
        sys, dia, mean = (latest.get(p) for p in ("nibp_sys", "nibp_dia", "nibp_mean"))
        if sys and dia:
            prio = max(sys[1], dia[1], mean[1] if mean else 0)
            text = f"{sys[0].value:.0f}/{dia[0].value:.0f}"
            sub = f"({mean[0].value:.0f}) mmHg · {_ago(sys[0], now)}" if mean else "mmHg"
            self.tiles["nibp"].show_value(
                text, sub, theme.priority_from_int(prio), stale="nibp_sys" in stale
            )
        else:  # no reading (yet, or any more: a new patient)
            self.tiles["nibp"].show_value("--", "mmHg", None)
        for key, unit in (("hr", "/min"), ("spo2", "%"), ("rr", "/min")):
            item = latest.get(key)
            if item is None:
                self.tiles[key].show_value("--", unit, None)
            else:
                r, prio = item
                old = key in stale
                self.tiles[key].show_value(
                    f"{r.value:.0f}",
                    f"{unit} · {_ago(r, now)}" if old else unit,
                    theme.priority_from_int(prio),
                    stale=old,
                )
