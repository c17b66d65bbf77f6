"""One chair: header with clock and countdown, live chart (or an entry panel), big numerics,
what is due, and the active flags; an action bar with large buttons and shortcuts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from devices.supervisor import LinkState, StatusEvent
from ketamon.domain.alarms import AlarmAction, AlarmEvent
from ketamon.domain.prompts import Prompt, PromptKind, PromptState
from ketamon.domain.session_rules import Phase
from ketamon.domain.thresholds import Priority
from ketamon.model.chair_session import ChairSessionModel
from ketamon.model.types import CurrentUser, PatientDetails
from ketamon.ui.alarm_panel import AlarmPanel
from ketamon.ui.chart import TrendChartWidget
from ketamon.ui.numerics import NumericsPanel
from ketamon.ui.panels import (
    CadssPanel,
    DischargePanel,
    DosePanel,
    EntriesPanel,
    LimitsPanel,
    MoaasPanel,
    NotePanel,
    Panel,
    ScreeningPanel,
    SideEffectsPanel,
    StartSessionPanel,
    SymptomPanel,
    VitalsPanel,
)
from ketamon.ui.pleth import PlethStripWidget

LINK_TEXT = {
    LinkState.CONNECTING: "MONITOR NOT CONNECTED",
    LinkState.NEGOTIATING: "MONITOR: waiting for data",
    LinkState.STREAMING: "MONITOR: streaming",
    LinkState.STOPPED: "MONITOR: stopped",
}

#: (panel key, button text, shortcut)
ACTIONS = (
    ("start", "New session", "F1"),
    ("screening", "Pre-dose check", "F8"),
    ("dose", "Dose", "F2"),
    ("moaas", "MOAA/S", "F3"),
    ("cadss", "CADSS", "F4"),
    ("side_effects", "Side effects", "F5"),
    ("note", "Note", "F6"),
    ("entries", "Entries", "F11"),
    ("vitals", "Vitals by hand", "F7"),
    ("limits", "Limits", "F10"),
    ("discharge", "Discharge", "F9"),
)
PROMPT_PANEL = {
    PromptKind.PREDOSE_BP: "screening",
    PromptKind.BP_40: "vitals",
    PromptKind.VITALS: "vitals",
    PromptKind.MOAAS: "moaas",
    PromptKind.CADSS: "cadss",
}


class ChairViewWidget(QWidget):
    def __init__(
        self,
        model: ChairSessionModel,
        *,
        find_patients: Callable[[str], list[PatientDetails]] = lambda q: [],
        authenticate: Callable[[str, str], CurrentUser] | None = None,
        sound: Callable[[Priority], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.chair = model.chair
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 4, 6, 4)
        header = QHBoxLayout()
        self.title = QLabel(f"<b>{self.chair.name}</b>")
        self.title.setStyleSheet("font-size: 15pt")
        self.phase_label = QLabel("")
        self.phase_label.setStyleSheet("font-size: 13pt; color: #c9d3dc")
        self.clock_label = QLabel("")
        self.clock_label.setObjectName("observationCountdown")
        self.clock_label.setStyleSheet("font-size: 15pt; font-weight: bold")
        self.link_label = QLabel(LINK_TEXT[LinkState.STOPPED])
        self.link_label.setObjectName("chairStatus")
        header.addWidget(self.title)
        header.addSpacing(12)
        header.addWidget(self.phase_label)
        header.addStretch(1)
        header.addWidget(self.clock_label)
        header.addSpacing(16)
        header.addWidget(self.link_label)
        root.addLayout(header)
        body = QHBoxLayout()
        self.stack = QStackedWidget()
        self.chart = TrendChartWidget(
            self.chair.buffers, self.chair.profile, model.session_clock, model.now
        )
        self.stack.addWidget(self.chart)
        self.panels: dict[str, Panel] = {
            "start": StartSessionPanel(model, find_patients),
            "screening": ScreeningPanel(model, authenticate),
            "dose": DosePanel(model),
            "moaas": MoaasPanel(model),
            "cadss": CadssPanel(model),
            "side_effects": SideEffectsPanel(model),
            "note": NotePanel(model),
            "entries": EntriesPanel(model),
            "vitals": VitalsPanel(model),
            "symptoms": SymptomPanel(model),
            "limits": LimitsPanel(model),
            "discharge": DischargePanel(model, authenticate),
        }
        for p in self.panels.values():
            self.stack.addWidget(p)
            p.sig_done.connect(self.show_chart)
        body.addWidget(self.stack, 4)
        side_widget = QWidget()
        side_widget.setFixedWidth(360)
        side = QVBoxLayout(side_widget)
        side.setContentsMargins(0, 0, 0, 0)
        self.numerics = NumericsPanel()
        side.addWidget(self.numerics)
        due_head = QLabel("Due")
        due_head.setStyleSheet("color: #9aa5b1")
        side.addWidget(due_head)
        self.prompt_box = QVBoxLayout()
        side.addLayout(self.prompt_box)
        self.prompt_buttons: list[QPushButton] = []
        self.alarm_panel = AlarmPanel(self.chair.active_alarms, sound)
        self.alarm_panel.sig_acknowledge_requested.connect(self._on_acknowledge_requested)
        side.addWidget(self.alarm_panel, 1)
        self.pleth = PlethStripWidget(self.chair.pleth)
        self.pleth.setVisible(False)  # shown once the monitor sends a pleth waveform
        side.addWidget(self.pleth)
        body.addWidget(side_widget)
        root.addLayout(body, 1)
        bar = QHBoxLayout()
        self.action_buttons: dict[str, QPushButton] = {}
        for key, text, shortcut in ACTIONS:
            b = QPushButton(f"{text}\n{shortcut}")
            b.setMinimumHeight(46)
            b.setToolTip(f"{text} ({shortcut})")
            b.clicked.connect(lambda _=False, k=key: self.open_panel(k))
            bar.addWidget(b)
            self.action_buttons[key] = b
            sc = QShortcut(QKeySequence(shortcut), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda k=key: self.open_panel(k))
        back = QShortcut(QKeySequence("Esc"), self)
        back.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        back.activated.connect(self.show_chart)
        root.addLayout(bar)
        model.sig_changed.connect(self._on_model_changed)
        model.sig_symptom_check_requested.connect(self._on_symptom_check_requested)
        self.chair.sig_link_changed.connect(self._on_chair_link_changed)
        self.chair.sig_alarm_changed.connect(self._on_chair_alarm_changed)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._on_tick_timeout)
        self._prompt_keys: list[tuple[str, str]] = []
        self._refresh_actions()

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.chart.start()
        self.pleth.start()
        self.alarm_panel.start()
        self._tick.start()
        self._on_tick_timeout()

    def stop(self) -> None:
        self.chart.stop()
        self.pleth.stop()
        self.alarm_panel.stop()
        self._tick.stop()

    # ---- navigation -------------------------------------------------------------------------
    def open_panel(self, key: str) -> None:
        panel = self.panels[key]
        panel.refresh()
        self.stack.setCurrentWidget(panel)
        self._on_tick_timeout()  # header, countdowns and Due list as of now

    def show_chart(self) -> None:
        self.stack.setCurrentWidget(self.chart)
        self._refresh_actions()

    def current_panel(self) -> str | None:
        w = self.stack.currentWidget()
        for k, p in self.panels.items():
            if p is w:
                return k
        return None

    # ---- slots ------------------------------------------------------------------------------
    def _on_tick_timeout(self) -> None:
        self.model.tick()
        now: datetime = self.model.now()
        clock = self.model.session_clock()
        self.numerics.update_values(self.chair.buffers.latest(), now)
        if self.pleth.isHidden() and self.chair.pleth.version:
            self.pleth.setVisible(True)
        s = self.model.session
        if s is None:
            self.clock_label.setText("No session")
        elif s.discharged is not None:
            self.clock_label.setText("Discharged")
        elif clock.first_dose is None:
            self.clock_label.setText(f"Pre-dose · {clock.minutes(now):.0f} min since start")
        else:
            left = clock.observation_remaining_min(now) or 0.0
            m = clock.minutes(now)
            self.clock_label.setText(
                f"T+{m:.0f} min · "
                + (f"2-h observation: {left:.0f} min left" if left > 0 else "2 h complete")
            )
        ph = self.model.phase()
        self.phase_label.setText(
            "" if s is None else f"{s.patient.label} · {ph.label if ph else ''}"
        )
        self._refresh_prompts()
        current = self.current_panel()
        if current in ("dose", "discharge"):
            panel = self.panels[current]
            tick = getattr(panel, "tick", None)
            if callable(tick):
                tick()

    def _refresh_prompts(self) -> None:
        ps = [p for p in self.model.prompts() if p.state is not PromptState.DONE][:3]
        keys = [(p.label, p.state.value) for p in ps]
        pending = self.model.symptom_check_pending
        keys.append(("symptoms", str(pending)))
        if keys == self._prompt_keys:
            return
        self._prompt_keys = keys
        for b in self.prompt_buttons:
            self.prompt_box.removeWidget(b)
            b.deleteLater()
        self.prompt_buttons = []
        if pending:
            b = QPushButton("⚠ Ask about symptoms (BP flagged)")
            b.setObjectName("promptButton")
            b.setStyleSheet("border: 2px solid #ffcc00; font-weight: bold; color: #ffcc00")
            b.clicked.connect(lambda _=False: self.open_panel("symptoms"))
            self.prompt_box.addWidget(b)
            self.prompt_buttons.append(b)
            ps = ps[:2]
        for p in ps:
            b = QPushButton(_prompt_text(p))
            if p.detail:
                b.setToolTip(p.detail)
            b.setMinimumHeight(30)
            b.setObjectName("promptButton")
            if p.state is PromptState.OVERDUE:
                b.setStyleSheet("border: 2px solid #ffcc00; font-weight: bold; color: #ffcc00")
            elif p.state is PromptState.DUE:
                b.setStyleSheet("border: 2px solid #32d2f0; font-weight: bold")
            b.clicked.connect(lambda _=False, k=PROMPT_PANEL[p.kind]: self.open_panel(k))
            self.prompt_box.addWidget(b)
            self.prompt_buttons.append(b)

    def _refresh_actions(self) -> None:
        s = self.model.session
        active = s is not None and s.discharged is None
        ph = self.model.phase()
        for key, b in self.action_buttons.items():
            if key == "start":
                b.setEnabled(not active)
            elif key == "screening":
                b.setEnabled(active and ph is Phase.PRE_DOSE)
            else:
                b.setEnabled(active)

    def _on_model_changed(self) -> None:
        self.chart.set_profile(self.chair.profile)
        self._refresh_actions()
        self.alarm_panel.refresh()
        s = self.model.session
        if s is not None:
            events = [(t, f"D{i}") for i, t in enumerate(s.device_times, 1)]
            if s.infusion_start:
                events.append((s.infusion_start, "IV start"))
            if s.infusion_stop:
                events.append((s.infusion_stop, "IV stop"))
            events += [(t, f"M{v}") for t, v in s.moaas]
            events += [(t, f"C{v}") for t, v in s.cadss]
            self.chart.set_events(events)
        self._prompt_keys = []
        self._on_tick_timeout()

    def _on_chair_alarm_changed(self, event: AlarmEvent) -> None:
        if event.action in (AlarmAction.RAISED, AlarmAction.ESCALATED):
            self.alarm_panel.announce(event.key, event.priority)

    def _on_symptom_check_requested(self) -> None:
        # Do not take the nurse out of a form she is filling in: then it waits at the top of
        # the Due list instead.
        if self.current_panel() is None:
            self.open_panel("symptoms")
        self._prompt_keys = []
        self._refresh_prompts()

    def _on_chair_link_changed(self, event: StatusEvent) -> None:
        text = LINK_TEXT[event.state]
        if event.state is not LinkState.STREAMING:
            text += f" ({event.reason})"
            self.link_label.setStyleSheet("color: #ffcc00; font-weight: bold")
        else:
            self.link_label.setStyleSheet("")
        self.link_label.setText(text)

    def _on_acknowledge_requested(self) -> None:
        self.chair.acknowledge_all()
        self.alarm_panel.refresh()


def _prompt_text(p: Prompt) -> str:
    mark = {PromptState.OVERDUE: "⚠ OVERDUE: ", PromptState.DUE: "▶ Due: "}.get(p.state, "Next: ")
    return f"{mark}{p.label}"  # the detail ("24 min late") is the tooltip: the column is narrow
