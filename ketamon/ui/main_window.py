"""The station window: one tab per chair, with the safety statement always visible."""

from __future__ import annotations

from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from ketamon import SAFETY_STATEMENT
from ketamon.ui.chair_view import ChairViewWidget


class MainWindow(QMainWindow):
    def __init__(self, title: str = "ketamon") -> None:
        super().__init__()
        self.setWindowTitle(title)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.banner = QLabel(f"⚠ {SAFETY_STATEMENT}")
        self.banner.setObjectName("safetyBanner")
        self.banner.setWordWrap(True)
        lay.addWidget(self.banner)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.chair_views: list[ChairViewWidget] = []
        for i in range(9):
            sc = QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self)
            sc.activated.connect(lambda i=i: self.tabs.setCurrentIndex(i))
        ack = QShortcut(QKeySequence("Ctrl+K"), self)
        ack.activated.connect(self._on_ack_shortcut_activated)
        self.resize(1366, 768)

    def add_chair(self, view: ChairViewWidget) -> None:
        self.chair_views.append(view)
        self.tabs.addTab(view, view.chair.name)
        view.start()

    def _on_ack_shortcut_activated(self) -> None:
        view = self.tabs.currentWidget()
        if isinstance(view, ChairViewWidget):
            view.ack_button.click()

    def closeEvent(self, event: QCloseEvent) -> None:
        for v in self.chair_views:
            v.stop()
        super().closeEvent(event)
