"""Every chair at a glance: phase, minutes since dose, next item due, worst active flag.
One click opens the chair."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from ketamon.presenters.chair import ChairPresenter
from ketamon.ui import theme


def chair_summary(model: ChairPresenter) -> dict[str, str]:
    """The overview's texts for one chair (the core's read model; also used by tests)."""
    x = model.summary()
    return {
        "patient": x.patient,
        "phase": x.phase,
        "time": x.time,
        "next": x.next,
        "alarm": x.alarm,
        "link": x.link,
    }


class ChairCard(QFrame):
    """A clickable card (a frame, so the theme's button height rules do not squeeze it)."""

    clicked = Signal()

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chairCard")
        self.model = model
        self.setMinimumSize(300, 190)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        lay = QVBoxLayout(self)
        self.name = QLabel(f"<b>{model.name}</b>")
        self.name.setStyleSheet("font-size: 16pt; background: transparent")
        self.lines = QLabel("")
        self.lines.setStyleSheet("font-size: 12pt; background: transparent")
        self.alarm = QLabel("")
        self.alarm.setStyleSheet("font-size: 12pt; font-weight: bold; background: transparent")
        for w in (self.name, self.lines, self.alarm):
            lay.addWidget(w)
        self._colour = ""
        self.refresh()

    def refresh(self) -> None:
        d = chair_summary(self.model)
        self.lines.setText(
            f"{d['patient']}\n{d['phase']}  {d['time']}\nNext: {d['next']}\n{d['link']}"
        )
        worst = self.model.worst_alarm()
        self.alarm.setText(d["alarm"])
        colour = "#2a3138" if worst is None else theme.PRIORITY_COLOURS[worst]
        if colour == self._colour:  # restyling re-polishes the card: only on a change
            return
        self._colour = colour
        self.alarm.setStyleSheet(
            f"font-size: 12pt; font-weight: bold; background: transparent; color: "
            f"{'#9aa5b1' if worst is None else colour}"
        )
        self.setStyleSheet(
            f"QFrame#chairCard {{ border: 3px solid {colour}; border-radius: 8px;"
            " background: #161c21; }"
        )

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class OverviewWidget(QWidget):
    sig_chair_selected = Signal(int)

    def __init__(self, models: Sequence[ChairPresenter], parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        #: REMS forms due / overdue (from the review desk's list), so nobody misses day 7
        self.pmf_label = QLabel("")
        self.pmf_label.setObjectName("pmfCounts")
        self.pmf_label.setStyleSheet("font-size: 12pt")
        outer.addWidget(self.pmf_label)
        grid = QGridLayout()
        outer.addLayout(grid, 1)
        self.cards: list[ChairCard] = []
        for i, m in enumerate(models):
            card = ChairCard(m)
            card.clicked.connect(lambda i=i: self.sig_chair_selected.emit(i))
            grid.addWidget(card, i // 3, i % 3)
            self.cards.append(card)
        grid.setRowStretch(len(models) // 3 + 1, 1)

    def set_pmf_counts(self, text: str, urgent: bool) -> None:
        self.pmf_label.setText(text)
        self.pmf_label.setStyleSheet(
            "font-size: 12pt; font-weight: bold; color: #ffcc00" if urgent else "font-size: 12pt"
        )

    def refresh(self) -> None:
        for c in self.cards:
            c.refresh()
