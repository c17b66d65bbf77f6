"""The device-2/3 countdown and the infusion's elapsed time and planned stop (the chair header
and the overview card say them), from the record alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ketamon.core.read_models import dosing_status
from ketamon.domain.record import Device, Infusion, PatientInfo, Plan, SessionState
from ketamon.domain.session_rules import Treatment

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _state(plan: Plan, **kw: object) -> SessionState:
    return SessionState(
        session_id=1,
        chair="Chair 1",
        patient=PatientInfo(None, "M-1", "Ann", "Test"),
        plan=plan,
        started=T0,
        started_by="nurse",
        **kw,  # type: ignore[arg-type]
    )


def _device(n: int, at: datetime) -> Device:
    return Device(entry_id=n, number=n, at=at, lot="L", mg=28.0)


def test_the_next_device_counts_down_five_minutes_then_is_ready() -> None:
    plan = Plan(Treatment.ESKETAMINE, dose_mg=84.0)
    assert dosing_status(_state(plan), T0) is None  # nothing given yet: the Dose panel says it
    one = _state(plan, devices=(_device(1, T0),))
    st = dosing_status(one, T0 + timedelta(seconds=70))
    assert st is not None and st.text == "Device 2 of 3 in 3:50" and st.waiting
    st = dosing_status(one, T0 + timedelta(minutes=5))
    assert st is not None and st.text == "Device 2 of 3: ready now" and st.ready
    done = _state(
        plan, devices=tuple(_device(i, T0 + timedelta(minutes=5 * i)) for i in (1, 2, 3))
    )
    assert dosing_status(done, T0 + timedelta(minutes=20)) is None


def test_an_infusion_shows_its_elapsed_time_and_planned_stop() -> None:
    plan = Plan(Treatment.IV_KETAMINE, iv_mg_per_kg=0.5, iv_minutes=40)
    inf = Infusion(
        entry_id=3,
        start=T0,
        planned_mg=35.0,
        rate_mg_per_min=0.875,
        mg_per_kg=0.5,
        weight_kg=70.0,
        planned_minutes=40.0,
    )
    st = dosing_status(_state(plan, infusion=inf), T0 + timedelta(minutes=12, seconds=30))
    stop = (T0 + timedelta(minutes=40)).astimezone().strftime("%H:%M")
    assert st is not None and st.text == f"IV 12:30 of 40 min · planned stop {stop}"
    stopped = replace(inf, stop=T0 + timedelta(minutes=20), given_mg=17.5)
    st = dosing_status(_state(plan, infusion=stopped), T0 + timedelta(minutes=30))
    assert st is not None and st.text == "IV stopped after 20 min: 17.5 mg"
