"""Physiological and link scenarios shared by the simulator driver and the device emulators.

A scenario is a deterministic function of seconds since the scenario started, so an emulator, the
simulator and a test that checks them all agree on what the patient "did". The dose is given at
``dose_at_s``; before that the patient is at baseline.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class Link(enum.Enum):
    UP = "up"
    PULLED = "pulled"  # cable out: the port disappears
    SILENT = "silent"  # port there, monitor sends nothing


@dataclass(frozen=True, slots=True)
class Vitals:
    hr: float
    spo2: float
    rr: float
    pr: float


@dataclass(frozen=True, slots=True)
class CuffReading:
    index: int  # cuff cycle number, counts from 0
    t_s: float  # when the measurement completed, seconds since scenario start
    sys: float
    dia: float
    mean: float


def _jitter(t: float, amp: float, seed: float) -> float:
    # Smooth deterministic "noise": two incommensurate sines.
    return amp * (0.6 * math.sin(t / 7.3 + seed) + 0.4 * math.sin(t / 2.9 + 2 * seed))


def _surge(minutes_after_dose: float, peak_min: float) -> float:
    """0 before the dose, rises to 1.0 at ``peak_min`` and decays over about 4 hours."""
    if minutes_after_dose <= 0:
        return 0.0
    x = minutes_after_dose / peak_min
    return x * math.exp(1.0 - x)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    dose_at_s: float = 300.0
    nibp_interval_s: float = 300.0
    first_nibp_s: float = 30.0
    baseline_sys: float = 124.0
    baseline_dia: float = 78.0
    baseline_hr: float = 72.0
    baseline_spo2: float = 98.0
    baseline_rr: float = 14.0
    bp_rise_sys: float = 0.0
    bp_rise_dia: float = 0.0
    bp_peak_min: float = 40.0
    tachy_hr: float = 0.0  # extra beats/min at peak
    desat_to: float | None = None  # SpO2 nadir
    desat_window_min: tuple[float, float] = (25.0, 45.0)
    artifact: bool = False  # garbage bytes, corrupt frames, invalid values
    pulled_windows_s: tuple[tuple[float, float], ...] = ()
    silent_windows_s: tuple[tuple[float, float], ...] = ()
    tags: tuple[str, ...] = field(default=())

    # ---- physiology -------------------------------------------------------------------------
    def minutes_after_dose(self, t_s: float) -> float:
        return (t_s - self.dose_at_s) / 60.0

    def vitals(self, t_s: float) -> Vitals:
        m = self.minutes_after_dose(t_s)
        hr = self.baseline_hr + _jitter(t_s, 2.0, 1.0) + 6.0 * _surge(m, 30.0)
        if self.tachy_hr:
            hr += self.tachy_hr * _surge(m, 35.0)
        spo2 = self.baseline_spo2 + _jitter(t_s, 0.6, 2.0)
        rr = self.baseline_rr + _jitter(t_s, 1.0, 3.0)
        if self.desat_to is not None:
            lo, hi = self.desat_window_min
            if lo <= m <= hi:
                # Ramp down over 3 min, hold, recover over 3 min.
                depth = min(1.0, (m - lo) / 3.0, (hi - m) / 3.0)
                spo2 -= (self.baseline_spo2 - self.desat_to) * depth
                rr -= 6.0 * depth
        spo2 = min(100.0, spo2)
        return Vitals(
            hr=round(hr), spo2=round(spo2), rr=round(rr), pr=round(hr + _jitter(t_s, 1, 4))
        )

    def cuff_index_at(self, t_s: float) -> int:
        """Index of the last cuff cycle completed at or before ``t_s`` (-1 if none yet)."""
        if t_s < self.first_nibp_s:
            return -1
        return int((t_s - self.first_nibp_s) // self.nibp_interval_s)

    def cuff(self, index: int, physiology_t_s: float | None = None) -> CuffReading:
        """Cuff cycle ``index``; its values are taken at ``physiology_t_s`` if given (the
        simulator uses that to follow a dose logged at another time), else at the cycle time."""
        t = self.first_nibp_s + index * self.nibp_interval_s
        sys, dia, mean = self.bp_at(t if physiology_t_s is None else physiology_t_s)
        return CuffReading(index=index, t_s=t, sys=sys, dia=dia, mean=mean)

    def bp_at(self, t: float) -> tuple[float, float, float]:
        m = self.minutes_after_dose(t)
        s = _surge(m, self.bp_peak_min)
        sys = (
            self.baseline_sys + self.bp_rise_sys * s + _jitter(t, 1.0, 5.0) + 4.0 * _surge(m, 30.0)
        )
        dia = (
            self.baseline_dia + self.bp_rise_dia * s + _jitter(t, 1.0, 6.0) + 2.0 * _surge(m, 30.0)
        )
        sys, dia = round(sys), round(dia)
        return sys, dia, round(dia + (sys - dia) / 3)

    # ---- link -------------------------------------------------------------------------------
    def link(self, t_s: float) -> Link:
        for start, length in self.pulled_windows_s:
            if start <= t_s < start + length:
                return Link.PULLED
        for start, length in self.silent_windows_s:
            if start <= t_s < start + length:
                return Link.SILENT
        return Link.UP

    def garbage_due(self, t_s: float, period_s: float = 7.0) -> bool:
        """True once per ``period_s`` for artifact scenarios (emulators inject junk then)."""
        return self.artifact and int(t_s / period_s) != int((t_s - 1.0) / period_s)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("stable", "Stable vitals before and after the dose."),
        Scenario(
            "bp_rise",
            "Blood pressure rises after the dose, peaking about 40 min later at +42/+27 over "
            "baseline (past the +40/+25 label rule).",
            # The surge term adds about +4/+2 at 40 min, so the rise terms are set below target.
            bp_rise_sys=38.0,
            bp_rise_dia=25.0,
            tags=("breach",),
        ),
        Scenario(
            "tachycardia",
            "Heart rate climbs to about 130/min 20–60 min after the dose.",
            tachy_hr=58.0,
            tags=("breach",),
        ),
        Scenario(
            "desaturation",
            "SpO2 falls to 84% and respiratory rate to 8/min 25–45 min after the dose.",
            desat_to=84.0,
            tags=("breach",),
        ),
        Scenario(
            "artifact",
            "Stable vitals with garbage bytes and corrupt frames on the line every few seconds.",
            artifact=True,
        ),
        Scenario(
            "cable_pulled",
            "The cable is pulled for 15 s at 60 s and every 10 min after, then restored.",
            pulled_windows_s=tuple((60.0 + 600.0 * k, 15.0) for k in range(50)),
        ),
        Scenario(
            "silent",
            "The monitor stays connected but sends nothing for 30 s at 60 s and every 10 min "
            "after.",
            silent_windows_s=tuple((60.0 + 600.0 * k, 30.0) for k in range(50)),
        ),
    )
}


class UnknownScenarioError(ValueError):
    pass


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(
            f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}"
        ) from None
