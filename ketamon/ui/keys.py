"""Keyboard and mouse-wheel conventions shared by the chair's forms.

A spin box or combo box changes its value on the mouse wheel only when it has the focus: a
wheel turned to scroll a form must never change a patient's sex or an answer on a row that is
not being filled in (the wheel scrolls the form instead).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)

_GUARDED = "ketamonWheelGuard"


class _WheelGuard(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget):
            return False
        if watched.hasFocus():
            return False
        # not focused: the form scrolls, the value stays
        parent = watched.parentWidget()
        while parent is not None and not isinstance(parent, QAbstractScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            QApplication.sendEvent(parent.verticalScrollBar(), event)
        return True


_guard = _WheelGuard()


def guard_wheel(root: QWidget) -> None:
    """Make every spin and combo box under ``root`` ignore the wheel unless focused (and take
    the focus by click or Tab, never by the wheel). Safe to call again after new fields."""
    for w in root.findChildren(QWidget):
        if isinstance(w, QAbstractSpinBox | QComboBox) and not w.property(_GUARDED):
            w.setProperty(_GUARDED, True)
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            w.installEventFilter(_guard)
