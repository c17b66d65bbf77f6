"""IEEE 11073-10101 (MDC) codes of what a chair monitor sends, one table for every decoder.

Numeric code = partition << 16 | term code, as HL7 OBX-3.1 carries it (IHE PCD-01) and as the
IntelliVue physio ids become with partition 2 (SCADA). Each entry says which ketamon parameter
the code becomes and the reading's ``origin`` (what measured it: ECG, pleth, cuff, impedance,
CO2 …, or the temperature site).

Sources of the codes (each entry names one):

* ``DK`` – HL7 Denmark, DK Core FHIR IG, ValueSet ``dk-core-IEEEBasicObservation`` (IEEE MDC
  codes with their IEEE reference ids and definitions: RR by method, pulse rates by source,
  temperatures by site, NIBP).
* ``PCD`` – IHE PCD TF Vol. 2 example (Philips gateway) and the NIST PCD-01 test message quoted
  in devices.md §2.4 (147842, 149522, 150021-23, 149546, 150035).
* ``DEV`` – devices.md §2.4 list of codes to accept (149530, 150456, 151562, 151578, 151570,
  150344, 151708, 150033-35) and §2.1 Philips term codes (MDC = 2·65536 + code).
* ``I16`` – ketamon issue 16, field report of Mindray HL7: cuff NIBP as 150301/150302/150303
  ``MDC_PRESS_CUFF_SYS/DIA/MEAN``.

Decisions (devices.md-style notes; README "Connecting a real monitor" repeats them):

* The **numeric code is authoritative** (devices.md §2.4, IHE PCD-01: OBX-3.1 is the identifier,
  OBX-3.2 its text). A ref id naming a *different* quantity means OBX-3 is damaged and the OBX
  is rejected, except for the vendor labels listed in :data:`VENDOR_REFID_ALIASES`.
* **149522 labelled as plain pulse rate** (judgement call 3 of issue 16): 149522 is
  ``MDC_BLD_PULS_RATE_INV`` (DK: "rate of blood pulse in an artery, measured invasively"). The
  code wins: the value stays ``pr_invasive`` with origin ``invasive`` and never feeds the chart's
  pulse rate; the vendor's label ``MDC_PULS_RATE`` is accepted as an alias, not as damage. A
  monitor that means a plain pulse rate should send 149514 ``MDC_PULS_RATE`` (→ ``pr``,
  origin ``unspecified``).
* **Respiration rate from every method is ``rr``**, told apart by ``origin`` (impedance, co2,
  airway, acoustic, pleth, unspecified); the site's ``[sources]`` setting picks the one the
  chart and thresholds use. (Up to issue 16, 151570 came out as ``rr_airway``; IntelliVue has
  always mapped the airway rate to ``rr``.)
* **Temperature from every site is ``temp``**, with the site as ``origin``.
* **Cuff pulse rate** (149546) stays ``nibp_pr`` (episodic, one per cuff cycle) and invasive
  pressures stay ``abp_*``: a chair has no arterial line, so they are recorded but never charted.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.readings import PARAMETERS


@dataclass(frozen=True, slots=True)
class MdcTerm:
    code: int  # partition << 16 | term
    refid: str  # IEEE reference id
    parameter: str  # ketamon parameter
    origin: str  # what measured it (devices.readings.ORIGINS)
    unit: str  # UCUM unit readings are emitted in
    source: str  # which document gives the code (module docstring)
    episodic: bool = False


def _t(
    code: int, refid: str, parameter: str, origin: str, source: str, episodic: bool = False
) -> MdcTerm:
    info = PARAMETERS.get(parameter)
    unit = info.unit if info else _EXTRA_UNITS[parameter]
    return MdcTerm(code, refid, parameter, origin, unit, source, episodic)


_EXTRA_UNITS = {
    "nibp_pr": "/min",
    "pr_invasive": "/min",
    "abp_sys": "mm[Hg]",
    "abp_dia": "mm[Hg]",
    "abp_mean": "mm[Hg]",
}

TERMS: tuple[MdcTerm, ...] = (
    # ---- blood pressure: cuff / non-invasive ------------------------------------------------
    _t(150021, "MDC_PRESS_BLD_NONINV_SYS", "nibp_sys", "cuff", "DK, PCD", True),
    _t(150022, "MDC_PRESS_BLD_NONINV_DIA", "nibp_dia", "cuff", "DK, PCD", True),
    _t(150023, "MDC_PRESS_BLD_NONINV_MEAN", "nibp_mean", "cuff", "DK, PCD", True),
    _t(150301, "MDC_PRESS_CUFF_SYS", "nibp_sys", "cuff", "I16 (Mindray)", True),
    _t(150302, "MDC_PRESS_CUFF_DIA", "nibp_dia", "cuff", "I16 (Mindray)", True),
    _t(150303, "MDC_PRESS_CUFF_MEAN", "nibp_mean", "cuff", "I16 (Mindray)", True),
    # ---- invasive (recorded, not charted) ---------------------------------------------------
    _t(150033, "MDC_PRESS_BLD_ART_SYS", "abp_sys", "invasive", "DEV"),
    _t(150034, "MDC_PRESS_BLD_ART_DIA", "abp_dia", "invasive", "DEV"),
    _t(150035, "MDC_PRESS_BLD_ART_MEAN", "abp_mean", "invasive", "PCD"),
    # ---- heart / pulse rate, every source ---------------------------------------------------
    _t(147842, "MDC_ECG_HEART_RATE", "hr", "ecg", "DK, PCD"),
    _t(149554, "MDC_TTHOR_HEART_RATE", "hr", "impedance", "DK"),
    _t(149514, "MDC_PULS_RATE", "pr", "unspecified", "DK"),
    _t(149530, "MDC_PULS_OXIM_PULS_RATE", "pr", "pleth", "DK, DEV"),
    _t(149538, "MDC_PLETH_PULS_RATE", "pr", "pleth", "DEV §2.1 (Philips 0x4822)"),
    _t(149546, "MDC_PULS_RATE_NON_INV", "nibp_pr", "cuff", "DK, PCD", True),
    _t(149522, "MDC_BLD_PULS_RATE_INV", "pr_invasive", "invasive", "DK, PCD"),
    # ---- oximetry ----------------------------------------------------------------------------
    _t(150456, "MDC_PULS_OXIM_SAT_O2", "spo2", "pleth", "DK, DEV"),
    _t(150448, "MDC_PULS_OXIM_PERF_REL", "pi", "pleth", "DEV §2.1 (Philips 0x4BB0)"),
    # ---- respiration rate, every method -----------------------------------------------------
    _t(151562, "MDC_RESP_RATE", "rr", "unspecified", "DK, DEV"),
    _t(151570, "MDC_AWAY_RESP_RATE", "rr", "airway", "DK, DEV"),
    _t(151578, "MDC_TTHOR_RESP_RATE", "rr", "impedance", "DK, DEV"),
    _t(151594, "MDC_CO2_RESP_RATE", "rr", "co2", "DK"),
    _t(151650, "MDC_ACOUSTIC_RESP_RATE", "rr", "acoustic", "DK"),
    _t(151658, "MDC_PULS_OXIM_PLETH_RESP_RATE", "rr", "pleth", "DK"),
    _t(151708, "MDC_AWAY_CO2_ET", "etco2", "co2", "DEV"),
    # ---- temperature, every site ------------------------------------------------------------
    _t(150344, "MDC_TEMP", "temp", "unspecified", "DEV"),
    _t(150364, "MDC_TEMP_BODY", "temp", "body", "DK"),
    _t(150368, "MDC_TEMP_CORE", "temp", "core", "DK"),
    _t(150388, "MDC_TEMP_SKIN", "temp", "skin", "DK"),
    _t(150392, "MDC_TEMP_TYMP", "temp", "tympanic", "DK"),
    _t(188420, "MDC_TEMP_RECT", "temp", "rectal", "DK"),
    _t(188424, "MDC_TEMP_ORAL", "temp", "oral", "DK"),
    _t(188428, "MDC_TEMP_EAR", "temp", "ear", "DK"),
    _t(188452, "MDC_TEMP_AXILLA", "temp", "axillary", "DK"),
    _t(188456, "MDC_TEMP_GIT", "temp", "gi", "DK"),
)

BY_CODE: dict[int, MdcTerm] = {t.code: t for t in TERMS}
BY_REFID: dict[str, MdcTerm] = {t.refid: t for t in TERMS}

#: Vendor labels for a code that name another quantity but are known not to be damage (issue 16
#: judgement call 3: a vendor labels 149522 as plain pulse rate).
VENDOR_REFID_ALIASES: dict[int, frozenset[str]] = {
    149522: frozenset({"MDC_PULS_RATE"}),
}

#: MDC unit codes (partition 4) → UCUM. Sources: devices.md §2.4 (266016, 264864, 262688,
#: 264928, 268192), §2.1 (265987 kPa = 4·65536 + 0x0F03, 266560 °F = 4·65536 + 0x1140) and
#: issue 16 (262656 MDC_DIM_DIMLESS, which the IntelliVue decoder already accepts for PI).
UNIT_CODES: dict[int, str] = {
    266016: "mm[Hg]",  # MDC_DIM_MMHG
    265987: "kPa",  # MDC_DIM_KILO_PASCAL
    264864: "/min",  # MDC_DIM_BEAT_PER_MIN
    264928: "/min",  # MDC_DIM_RESP_PER_MIN
    262688: "%",  # MDC_DIM_PERCENT
    262656: "1",  # MDC_DIM_DIMLESS
    268192: "Cel",  # MDC_DIM_DEGC
    266560: "[degF]",  # MDC_DIM_FAHR
}

#: Philips IntelliVue physio id (partition 2 term code) → MDC term, for the IntelliVue decoder.
#: NOM_RESP_RATE (0x500A) is the monitor's impedance respiration (IntelliVue "Resp" from the ECG
#: leads; devices.md §2.1 lists it beside NOM_AWAY_RESP_RATE, the CO2/airway rate).
PHILIPS_ORIGIN: dict[int, str] = {
    0x4182: "ecg",  # NOM_ECG_CARD_BEAT_RATE
    0x4822: "pleth",  # NOM_PLETH_PULS_RATE
    0x4BB8: "pleth",  # NOM_PULS_OXIM_SAT_O2
    0x4BB0: "pleth",  # NOM_PULS_OXIM_PERF_REL
    0x500A: "impedance",  # NOM_RESP_RATE
    0x5012: "airway",  # NOM_AWAY_RESP_RATE
    0x50B0: "co2",  # NOM_AWAY_CO2_ET
    0x4B48: "unspecified",  # NOM_TEMP
    0x4A05: "cuff",
    0x4A06: "cuff",
    0x4A07: "cuff",
    0xF0E5: "cuff",  # NOM_PRESS_BLD_NONINV_PULS_RATE (Philips private)
}


def one_char_apart(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` have the same length and differ in exactly one character: what
    a single flipped bit does to an ASCII label."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1
