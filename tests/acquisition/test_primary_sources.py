"""Where readings enter the chair: only the primary source of each parameter (site [sources],
ketamon.domain.sources) reaches the chart and the thresholds; every reading is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.protocols import protocol_class
from devices.readings import Reading
from devices.transports import ReplayTransport
from ketamon.acquisition.pipeline import ChairPipeline, MonitorSpec
from ketamon.config import Config
from ketamon.services import load_profile

CORPUS = Path(__file__).resolve().parents[1] / "devices" / "corpus"


def test_pipeline_charts_and_checks_only_the_primary_source_and_stores_all() -> None:
    """The field-corpus capture with every RR and temperature source, replayed through the HL7
    decoder into a chair: the chart holds the CO2 RR and the tympanic temperature only; the sink
    (storage) gets every reading."""
    stored: list[Reading] = []
    path = CORPUS / "hl7" / "sources_temperature_rr_pulse.hl7"

    def make() -> tuple[ReplayTransport, object]:
        return ReplayTransport(path), protocol_class("hl7")(source="corpus")

    p = ChairPipeline(
        "chair 1",
        MonitorSpec(make=make, description="corpus"),  # type: ignore[arg-type]
        load_profile(Config()),
        on_readings=stored.extend,
    )
    p.run(max_seconds=1.0)
    assert len(stored) == 11
    rr = p.buffers.series("rr")
    temp = p.buffers.series("temp")
    assert rr is not None and temp is not None
    assert list(rr.v) == [14.0]  # CO2, not impedance 15 nor acoustic 16
    # tympanic (98.6 °F = 37.0 Cel) before oral 36.9, axillary 36.4 and skin 33.1
    assert list(temp.v) == [pytest.approx(37.0)]
    pr = p.buffers.series("pr")
    assert pr is not None and list(pr.v) == [70.0]  # pleth before unspecified
