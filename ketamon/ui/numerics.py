"""Large latest-value tiles, readable from the door. A flagged value shows its priority marker and
word as well as its colour.

Numerics never lie:

* a value older than its parameter's maximum age (10 s for the continuous numerics, the cuff
  interval plus grace for NIBP) is greyed and shows its age; past the site's limit (the link
  loss turning medium priority for continuous values, one more cuff interval for NIBP) it is
  replaced by "--" and the age of the last one;
* a value typed by hand is marked "M" with who and when, and shows no mean unless one was
  typed; the monitor's own latest reading stays on the tile beneath it, never hidden.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

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
MANUAL_COLOUR = "#b39ddb"

Monitor = dict[str, tuple[Reading, int]]
Manual = dict[str, tuple[datetime, float, str]]


class NumericTile(QFrame):
    def __init__(self, key: str, title: str, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("numericTile")
        self.key = key
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(0)
        top = QHBoxLayout()
        top.setSpacing(6)
        self.name = QLabel(title)
        self.name.setObjectName("numericName")
        self.mark = QLabel("")
        self.mark.setObjectName("manualMark")
        self.mark.setToolTip("Typed by hand (not from the monitor)")
        self.mark.setStyleSheet(
            f"color: #000; background: {MANUAL_COLOUR}; font-weight: bold; padding: 0 4px;"
            " border-radius: 3px"
        )
        self.mark.hide()
        top.addWidget(self.name)
        top.addWidget(self.mark)
        top.addStretch(1)
        self.value = QLabel("--")
        self.value.setObjectName("numericValue")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.value.setStyleSheet(f"color: {theme.PARAMETER_COLOURS.get(key, '#e0e0e0')}")
        self.unit = QLabel(unit)
        self.unit.setObjectName("numericUnit")
        self.unit.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.unit.setWordWrap(True)
        # a long subtitle wraps inside the tile, never widens it
        self.unit.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.flag = QLabel("")
        self.flag.setObjectName("numericFlag")
        self.flag.hide()
        lay.addLayout(top)
        for w in (self.value, self.unit, self.flag):
            lay.addWidget(w)
        self._base_colour = theme.PARAMETER_COLOURS.get(key, "#e0e0e0")
        self.stale = False
        self.manual = False
        self._shown: tuple[str, str, Priority | None, bool, bool] | None = None

    def show_value(
        self,
        text: str,
        subtitle: str,
        priority: Priority | None,
        *,
        stale: bool = False,
        manual: bool = False,
    ) -> None:
        shown = (text, subtitle, priority, stale, manual)
        if shown == self._shown:
            return  # twice a second for every chair: restyling is costly, do it on a change
        restyle = self._shown is None or self._shown[2:] != shown[2:]
        self._shown = shown
        self.stale, self.manual = stale, manual
        self.value.setText(text)
        self.unit.setText(subtitle)
        if not restyle:
            return
        self.mark.setText("M" if manual else "")
        self.mark.setVisible(manual)
        base = MANUAL_COLOUR if manual else self._base_colour
        self.flag.setVisible(priority is not None)  # an empty line would take the flags' room
        if priority is None:
            self.flag.setText("")
            self.value.setStyleSheet(f"color: {STALE_COLOUR if stale else base}")
            self.setStyleSheet("")
        else:
            colour = theme.PRIORITY_COLOURS[priority]
            self.flag.setText(f"{priority.marker} {theme.PRIORITY_TEXT[priority]}")
            self.flag.setStyleSheet(f"color: {colour}")
            self.value.setStyleSheet(f"color: {STALE_COLOUR if stale else colour}")
            self.setStyleSheet(f"QFrame#numericTile {{ border: 3px solid {colour}; }}")


def _artifact_tile(tile: NumericTile, why: str) -> None:
    """The monitor's newest value was implausible: not shown as a value, said as an artifact."""
    tile.show_value("--", "artifact", None, stale=True)
    tile.setToolTip(f"Artifact (stored as invalid, not used): {why}")


def age_text(seconds: float) -> str:
    s = int(seconds)
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
        for c in range(3):
            grid.setColumnStretch(c, 1)  # three equal tiles, whatever their texts say

    def update_values(
        self,
        monitor: Monitor,
        manual: Manual,
        now: datetime,
        grey_after_s: dict[str, float],
        blank_after_s: dict[str, float],
        artifacts: dict[str, str] | None = None,
    ) -> None:
        def age(when: datetime) -> float:
            return (now - when).total_seconds()

        # ---- NIBP: the newest cuff reading, the monitor's or one typed by hand
        sys, dia, mean = (monitor.get(p) for p in ("nibp_sys", "nibp_dia", "nibp_mean"))
        msys, mdia = manual.get("nibp_sys"), manual.get("nibp_dia")
        mon_at = sys[0].host_time if sys and dia else None
        man_at = msys[0] if msys and mdia else None
        grey, blank = grey_after_s.get("nibp_sys", 1020.0), blank_after_s.get("nibp_sys", 1920.0)
        tile = self.tiles["nibp"]
        mon_text = ""
        if sys and dia and mon_at is not None:
            mon_text = f"{sys[0].value:.0f}/{dia[0].value:.0f}" + (
                f" ({mean[0].value:.0f})" if mean else ""
            )
        if man_at is not None and msys and mdia and (mon_at is None or man_at > mon_at):
            a = age(man_at)
            text = f"{msys[1]:.0f}/{mdia[1]:.0f}"
            mmean = manual.get("nibp_mean")
            if mmean is not None and mmean[0] == man_at:
                text += f" ({mmean[1]:.0f})"  # its own mean, typed with it; never the monitor's
            sub = f"by hand {man_at.astimezone().strftime('%H:%M')} ({msys[2]})"
            if mon_text and mon_at is not None:
                sub += f" · monitor {mon_text} {age_text(age(mon_at))}"
            if a > blank:
                tile.show_value("--", f"last by hand {age_text(a)}", None, stale=True)
            else:
                tile.show_value(text, sub, None, stale=a > grey, manual=True)
        elif sys and dia and mon_at is not None:
            a = age(mon_at)
            prio = max(sys[1], dia[1], mean[1] if mean else 0)
            if a > blank:
                tile.show_value("--", f"last cuff {age_text(a)}", None, stale=True)
            else:
                text = f"{sys[0].value:.0f}/{dia[0].value:.0f}"
                sub = f"({mean[0].value:.0f}) mmHg · {age_text(a)}" if mean else "mmHg"
                tile.show_value(text, sub, theme.priority_from_int(prio), stale=a > grey)
        else:  # no reading (yet, or any more: a new patient)
            tile.show_value("--", "mmHg", None)
        # ---- the continuous numerics
        for key, unit in (("hr", "/min"), ("spo2", "%"), ("rr", "/min")):
            tile = self.tiles[key]
            item = monitor.get(key)
            typed = manual.get(key)
            grey, blank = grey_after_s.get(key, 10.0), blank_after_s.get(key, 30.0)
            if typed is not None and (item is None or typed[0] > item[0].host_time):
                a = age(typed[0])
                sub = f"{unit} · M {age_text(a)}"
                if item is not None:
                    sub += f" · mon {item[0].value:.0f}"
                if a > max(blank, grey_after_s.get("nibp_sys", 1020.0)):
                    tile.show_value("--", f"M {age_text(a)}", None, stale=True)
                else:
                    tile.show_value(f"{typed[1]:.0f}", sub, None, stale=a > grey, manual=True)
            elif item is None:
                tile.show_value("--", unit, None)
            else:
                r, prio = item
                a = age(r.host_time)
                if a > blank:
                    tile.show_value("--", f"last {age_text(a)}", None, stale=True)
                else:
                    old = a > grey
                    tile.show_value(
                        f"{r.value:.0f}",
                        f"{unit} · {age_text(a)}" if old else unit,
                        theme.priority_from_int(prio),
                        stale=old,
                    )
        self._show_artifacts(artifacts or {})

    def _show_artifacts(self, artifacts: dict[str, str]) -> None:
        for tile_key, params in (
            ("nibp", ("nibp_sys", "nibp_dia")),
            ("hr", ("hr",)),
            ("spo2", ("spo2",)),
            ("rr", ("rr",)),
        ):
            tile = self.tiles[tile_key]
            why = next((artifacts[p] for p in params if p in artifacts), None)
            if why is not None and not tile.manual:
                _artifact_tile(tile, why)
            elif why is None and tile.toolTip():
                tile.setToolTip("")
