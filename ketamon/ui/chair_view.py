"""One chair: header with clock and countdown, live chart (or an entry panel), big numerics,
what is due, and the active flags; an action bar with large buttons and shortcuts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.prompts import Prompt, PromptKind, PromptState
from ketamon.domain.record import EntryKind
from ketamon.domain.session_rules import Phase
from ketamon.domain.thresholds import Priority
from ketamon.presenters.chair import AlarmAnnouncement, ChairPresenter, LinkInfo
from ketamon.ui.alarm_panel import AlarmPanel
from ketamon.ui.chart import TrendChartWidget
from ketamon.ui.course_panels import CoursePanel
from ketamon.ui.keys import guard_wheel
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
    ("course", "Course", "F12"),
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
        model: ChairPresenter,
        *,
        sound: Callable[[Priority], None] | None = None,
        audio_pause_s: float = 120.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 4, 6, 4)
        header = QHBoxLayout()
        self.title = QLabel(f"<b>{model.name}</b>")
        self.title.setStyleSheet("font-size: 15pt")
        self.phase_label = QLabel("")
        self.phase_label.setStyleSheet("font-size: 13pt; color: #c9d3dc")
        self.clock_label = QLabel("")
        self.clock_label.setObjectName("observationCountdown")
        self.clock_label.setStyleSheet("font-size: 15pt; font-weight: bold")
        self.dose_label = QLabel("")
        self.dose_label.setObjectName("doseCountdown")
        self.dose_label.setStyleSheet("font-size: 14pt; font-weight: bold; color: #ffcc00")
        self.link_label = QLabel(model.link.text)
        self.link_label.setObjectName("chairStatus")
        header.addWidget(self.title)
        header.addSpacing(12)
        header.addWidget(self.phase_label)
        header.addStretch(1)
        header.addWidget(self.dose_label)
        header.addSpacing(16)
        header.addWidget(self.clock_label)
        header.addSpacing(16)
        header.addWidget(self.link_label)
        root.addLayout(header)
        body = QHBoxLayout()
        self.stack = QStackedWidget()
        self.chart = TrendChartWidget(
            model.buffers,
            model.profile,
            model.session_clock,
            model.now,
            in_session=lambda: model.state is not None,
        )
        self.stack.addWidget(self.chart)
        self.panels: dict[str, Panel] = _LazyPanels(self)
        body.addWidget(self.stack, 4)
        side_widget = QWidget()
        side_widget.setFixedWidth(380)
        side = QVBoxLayout(side_widget)
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(4)
        self.numerics = NumericsPanel()
        side.addWidget(self.numerics)
        self.prompt_box = QVBoxLayout()
        self.prompt_box.setSpacing(3)
        side.addLayout(self.prompt_box)
        self.prompt_buttons: list[QPushButton] = []
        self.alarm_panel = AlarmPanel(
            model.active_alarms, sound, audio_pause_s=audio_pause_s, raised_at=model.raised_at
        )
        self.alarm_panel.sig_acknowledge_requested.connect(self._on_acknowledge_requested)
        self.alarm_panel.sig_reset_requested.connect(self._on_reset_requested)
        side.addWidget(self.alarm_panel, 1)
        self.pleth = PlethStripWidget(model.pleth)
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
        # Keys work wherever the focus is within the chair (the main window puts the focus
        # into the chair when it is shown): Esc back to the chart, Ctrl+K acknowledges the
        # most urgent flag, Ctrl+Shift+K all of them, Ctrl+P AUDIO PAUSED, Ctrl+Shift+R
        # ALARM RESET.
        for keys, slot in (
            ("Esc", self.show_chart),
            ("Ctrl+K", self.acknowledge_most_urgent),
            ("Ctrl+Shift+K", self.alarm_panel.ack_button.click),
            ("Ctrl+P", self.alarm_panel.pause_button.click),
            ("Ctrl+Shift+R", self.alarm_panel.reset_button.click),
        ):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        self.chart.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        root.addLayout(bar)
        model.sig_changed.connect(self._on_model_changed)
        model.sig_session_changed.connect(self._on_model_session_changed)
        model.sig_symptom_check_requested.connect(self._on_symptom_check_requested)
        model.sig_link_changed.connect(self._on_model_link_changed)
        model.sig_alarm_raised.connect(self._on_model_alarm_raised)
        model.sig_alarms_changed.connect(self.alarm_panel.refresh)
        model.sig_error.connect(self._on_model_error)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._on_tick_timeout)
        self._prompt_keys: list[tuple[str, str]] = []
        self._started = False
        self._refresh_actions()

    def _build_panels(self) -> None:
        """Forget the panels of the last session: a new session gets new, empty forms, each
        built when it is first opened (building all of them at once stalls the screen)."""
        for p in self.panels.values():
            self.stack.removeWidget(p)
            p.deleteLater()
        self.panels = _LazyPanels(self)

    def _make_panel(self, key: str) -> Panel:
        panel = PANELS[key](self.model)
        self.stack.addWidget(panel)
        panel.sig_done.connect(self.show_chart)
        return panel

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        self.alarm_panel.start()  # flags sound and repeat for every chair, shown or not
        self._tick.start()
        if self.isVisible():
            self.chart.start()
            self.pleth.start()
        self._on_tick_timeout()

    def stop(self) -> None:
        self._started = False
        self.chart.stop()
        self.pleth.stop()
        self.alarm_panel.stop()
        self._tick.stop()

    # ---- navigation -------------------------------------------------------------------------
    def open_panel(self, key: str) -> None:
        if not self.action_enabled(key):
            return  # a key for an action that is not possible now (as its greyed button)
        panel = self.panels[key]
        panel.refresh()
        guard_wheel(panel)
        self.stack.setCurrentWidget(panel)
        panel.focus_first()  # typing goes into the form at once
        self._refresh_view()  # header, countdowns and Due list as of now

    def action_enabled(self, key: str) -> bool:
        b = self.action_buttons.get(key)
        return b is None or b.isEnabled()

    def show_chart(self) -> None:
        self.stack.setCurrentWidget(self.chart)
        self._refresh_actions()
        if self.isVisible():
            self.chart.setFocus(Qt.FocusReason.OtherFocusReason)  # keys stay in this chair

    def take_focus(self) -> None:
        """Put the keyboard focus into this chair (shown by Ctrl+N or an overview card): the
        open form's first field, else the chart, so the F-keys work at once."""
        key = self.current_panel()
        if key is not None:
            self.panels[key].focus_first()
        else:
            self.chart.setFocus(Qt.FocusReason.OtherFocusReason)

    def current_panel(self) -> str | None:
        w = self.stack.currentWidget()
        for k, p in self.panels.items():
            if p is w:
                return k
        return None

    # ---- slots ------------------------------------------------------------------------------
    def hideEvent(self, event: QHideEvent) -> None:
        # A chair in a background tab draws nothing: its chart and pleth timers stop (16
        # chairs' timers woke the UI thread ~500 times a second for nothing)
        self.chart.stop()
        self.pleth.stop()
        super().hideEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._started:
            self.chart.start()
            self.pleth.start()
        self._prompt_keys = []
        self._refresh_view()  # hidden chairs skip the periodic screen updates: catch up now

    def _on_tick_timeout(self) -> None:
        self.model.tick()  # the technical checks run for every chair, shown or not
        if self.isVisible():
            self._refresh_view()

    def _refresh_view(self) -> None:
        """Header, numerics, the Due list and the open panel's countdowns, as of now."""
        now: datetime = self.model.now()
        clock = self.model.session_clock()
        grey, blank = self.model.numeric_ages()
        self.numerics.update_values(
            self.model.monitor_latest(),
            self.model.manual_latest(),
            now,
            grey,
            blank,
            self.model.standing_artifacts(),
        )
        if self.pleth.isHidden() and self.model.pleth.version:
            self.pleth.setVisible(True)
        s = self.model.state
        last = self.model.last_state
        if s is None:
            ended = last is not None and last.discharge is not None
            self.clock_label.setText("Discharged · no session" if ended else "No session")
        elif clock.first_dose is None:
            self.clock_label.setText(f"Pre-dose · {clock.minutes(now):.0f} min since start")
        else:
            left = clock.observation_remaining_min(now) or 0.0
            m = clock.minutes(now)
            self.clock_label.setText(
                f"T+{m:.0f} min · "
                + (f"2-h observation: {left:.0f} min left" if left > 0 else "2 h complete")
            )
        dosing = self.model.dosing_status()
        self.dose_label.setText("" if dosing is None else dosing.text)
        ph = self.model.phase()
        self.phase_label.setText(
            "" if s is None else f"{self.model.patient_label()} · {ph.label if ph else ''}"
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
            b = QPushButton("⚠ Due: ask about symptoms (BP flagged)")
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
            b.setObjectName("promptButton")
            if p.state is PromptState.OVERDUE:
                b.setStyleSheet("border: 2px solid #ffcc00; font-weight: bold; color: #ffcc00")
            elif p.state is PromptState.DUE:
                b.setStyleSheet("border: 2px solid #32d2f0; font-weight: bold")
            b.clicked.connect(lambda _=False, k=PROMPT_PANEL[p.kind]: self.open_panel(k))
            self.prompt_box.addWidget(b)
            self.prompt_buttons.append(b)

    def _refresh_actions(self) -> None:
        active = self.model.state is not None
        ph = self.model.phase()
        for key, b in self.action_buttons.items():
            if key == "start":
                b.setEnabled(not active)
            elif key == "screening":
                b.setEnabled(active and ph is Phase.PRE_DOSE)
            else:
                b.setEnabled(active)

    def _on_model_changed(self) -> None:
        self.chart.set_profile(self.model.profile)
        self._refresh_actions()
        self.alarm_panel.refresh()
        s = self.model.state
        events: list[tuple[datetime, str]] = []
        if s is not None:
            events = [(d.at, f"D{d.number}") for d in s.devices]
            if s.infusion is not None:
                events.append((s.infusion.start, "IV start"))
                if s.infusion.stop is not None:
                    events.append((s.infusion.stop, "IV stop"))
            if s.other_dose is not None:
                events.append((s.other_dose, "Dose"))
            events += [(o.at, f"M{o.score}") for o in s.live(EntryKind.MOAAS)]
            events += [(o.at, f"C{o.score}") for o in s.live(EntryKind.CADSS)]
        self.chart.set_events(events)
        manual = [
            (v.at, p, float(value))
            for v in (s.vitals if s is not None else ())
            if not v.in_error
            for p, value in v.values.items()
        ]
        scr = s.screening if s is not None else None
        if scr is not None and scr.bp_source == "manual" and scr.bp is not None:
            manual += [(scr.at, "nibp_sys", scr.bp[0]), (scr.at, "nibp_dia", scr.bp[1])]
            if scr.hr is not None:
                manual.append((scr.at, "hr", scr.hr))
        self.chart.set_manual(manual)
        self._prompt_keys = []
        self._refresh_view()

    def _on_model_session_changed(self) -> None:
        # another patient (or none): forms, chart marks and the view start afresh
        self.show_chart()
        self._build_panels()
        self.chart.redraw(force=True)

    def _on_model_alarm_raised(self, a: AlarmAnnouncement) -> None:
        self.alarm_panel.announce(a.key, a.priority)
        self.alarm_panel.refresh()

    def _on_symptom_check_requested(self) -> None:
        # Do not take the nurse out of a form she is filling in: then it waits at the top of
        # the Due list instead.
        if self.current_panel() is None:
            self.open_panel("symptoms")
        self._prompt_keys = []
        self._refresh_prompts()

    def _on_model_link_changed(self, link: LinkInfo) -> None:
        self.link_label.setStyleSheet(
            "" if link.streaming else "color: #ffcc00; font-weight: bold"
        )
        self.link_label.setText(link.text)

    def _on_model_error(self, message: str) -> None:
        self.link_label.setStyleSheet("color: #ff6b6b; font-weight: bold")
        self.link_label.setText(f"NOT SAVED: {message}")

    def _on_acknowledge_requested(self, key: str | None) -> None:
        self.model.acknowledge(key).on_done(lambda _p: self.alarm_panel.refresh())

    def acknowledge_most_urgent(self) -> None:
        """Ctrl+K: the most urgent flag not yet acknowledged (one flag, not all of them)."""
        key = self.alarm_panel.most_urgent_unacknowledged()
        if key is not None:
            self._on_acknowledge_requested(key)

    def _on_reset_requested(self) -> None:
        self.model.reset_alarms().on_done(lambda _p: self.alarm_panel.refresh())


PANELS: dict[str, Callable[[ChairPresenter], Panel]] = {
    "start": StartSessionPanel,
    "screening": ScreeningPanel,
    "dose": DosePanel,
    "moaas": MoaasPanel,
    "cadss": CadssPanel,
    "side_effects": SideEffectsPanel,
    "note": NotePanel,
    "entries": EntriesPanel,
    "vitals": VitalsPanel,
    "symptoms": SymptomPanel,
    "limits": LimitsPanel,
    "discharge": DischargePanel,
    "course": CoursePanel,  # screening, scales, waste, therapist (issue 15)
}


class _LazyPanels(dict[str, Panel]):
    """The chair's panels, each built on first use."""

    def __init__(self, view: ChairViewWidget) -> None:
        super().__init__()
        self._view = view

    def __missing__(self, key: str) -> Panel:
        if key not in PANELS:
            raise KeyError(key)
        panel = self._view._make_panel(key)
        self[key] = panel
        return panel


def _prompt_text(p: Prompt) -> str:
    mark = {PromptState.OVERDUE: "⚠ OVERDUE: ", PromptState.DUE: "▶ Due: "}.get(p.state, "Next: ")
    return f"{mark}{p.label}"  # the detail ("24 min late") is the tooltip: the column is narrow
