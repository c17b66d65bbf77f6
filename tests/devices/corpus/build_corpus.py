"""Writes the field corpus (``python tests/devices/corpus/build_corpus.py``).

Every file is built from a public document or standards example named in ``manifest.toml``;
this script is how the bytes were made (HL7 text wrapped in MLLP, Masimo lines with CR LF, the
binary protocols framed by ketamon's codecs from the documented structures). The corpus test
checks that the committed files still equal what this script builds, so a file cannot drift away
from its note.
"""

from __future__ import annotations

import struct
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from devices.protocols import _datex_codec as dx  # noqa: E402
from devices.protocols import _intellivue_codec as iv  # noqa: E402

CR = "\r"


def mllp(*segments: str) -> bytes:
    return b"\x0b" + CR.join(segments).encode("ascii") + CR.encode() + b"\x1c\x0d"


PCD_MSH = "MSH|^~\\&|{app}^{eui}^EUI-64|{fac}|||{ts}||ORU^R01^ORU_R01|{cid}|P|2.6|||NE|AL||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"  # noqa: E501


def msh(app: str, fac: str, ts: str, cid: str, eui: str = "0012345678ABCDEF") -> str:
    return PCD_MSH.format(app=app, eui=eui, fac=fac, ts=ts, cid=cid)


def hl7_files() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    # IHE PCD TF-2 example from a Philips gateway (quoted on hl7.org FHIR DSTU1 device
    # observation report examples; devices.md §2.4); elided fields filled as PCD-01 requires.
    out["hl7/ihe_pcd_tf2_philips_gateway.hl7"] = mllp(
        "MSH|^~\\&|HL7^080019FFFF4F6AC0^EUI-64|MMS|||20081211144500||ORU^R01^ORU_R01|MSG0001|P|2.6|||NE|AL",
        "PID|||12345^^^Hospital^PI||Doe^John",
        "OBR|1|||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||20081211144500",
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.6.1.1|60|/min^/min^UCUM|||||R",
        "OBX|3|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.3.1.1|92|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|6|NM|149522^MDC_BLD_PULS_RATE_INV^MDC|1.2.1.1|60|/min^/min^UCUM|||||R",
    )
    # NIST PCD-01 test message (patient HO2009001; devices.md §2.4): NIBP 120/80/93, cuff PR 63.
    t = "20110602045842+0000"
    out["hl7/nist_pcd01_nibp.hl7"] = mllp(
        msh("NIST_SENDER", "NIST", t, "NIST-PCD01-0001"),
        "PID|||HO2009001^^^NIST^PI||Hon^Albert^^^^^L",
        "OBR|1|||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||" + t,
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
        "OBX|2||70686^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.1.0.0|||||||X",
        "OBX|3||70687^MDC_DEV_PRESS_BLD_NONINV_CHAN^MDC|1.1.1.0|||||||X",
        f"OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|120|mm[Hg]^mm[Hg]^UCUM|||||R|||{t}",
        f"OBX|5|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.2|80|mm[Hg]^mm[Hg]^UCUM|||||R|||{t}",
        f"OBX|6|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.1.3|93|mm[Hg]^mm[Hg]^UCUM|||||R|||{t}",
        f"OBX|7|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.1.1.4|63|{{beat}}/min^{{beat}}/min^UCUM|||||R|||{t}",
    )
    # Mindray cuff NIBP codes (issue 16 defect 1: 147/90 reported; mean 109 = the mean the
    # monitor computes for 147/90 by the usual 1/3 rule, filled in here), with the periodic
    # numerics in the MDC units devices.md §2.4 lists.
    t = "20250610143000+0800"
    out["hl7/mindray_cuff_nibp.hl7"] = mllp(
        msh("Mindray", "BeneVision", t, "MR-0001"),
        "PID|||M123||^^^^^^L",
        "OBR|1||||||" + t,
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|78|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R",
        "OBX|3|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|77|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|4|NM|151578^MDC_TTHOR_RESP_RATE^MDC|1.1.1.1|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
        f"OBX|5|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.3.1.1|147|266016^MDC_DIM_MMHG^MDC|||||R|||{t}",
        f"OBX|6|NM|150302^MDC_PRESS_CUFF_DIA^MDC|1.3.1.2|90|266016^MDC_DIM_MMHG^MDC|||||R|||{t}",
        f"OBX|7|NM|150303^MDC_PRESS_CUFF_MEAN^MDC|1.3.1.3|109|266016^MDC_DIM_MMHG^MDC|||||R|||{t}",
    )
    # Mindray gateway "no value" sentinels (issue 16 defect 2): -999 for SpO2 and HR, -99.9
    # for temperature; the RR beside them is a real value.
    t = "20250610143500+0800"
    out["hl7/mindray_gateway_sentinels.hl7"] = mllp(
        msh("Mindray", "eGateway", t, "MR-0002"),
        "PID|||M123",
        "OBR|1||||||" + t,
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|-999|262688^MDC_DIM_PERCENT^MDC|||||R",
        "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|-999|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|3|NM|150344^MDC_TEMP^MDC|1.4.1.1|-99.9|268192^MDC_DIM_DEGC^MDC|||||R",
        "OBX|4|NM|151578^MDC_TTHOR_RESP_RATE^MDC|1.1.1.1|18|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
    )
    # Demo mode (issue 16 defect 3): OBX-8 'DEMO' on every value.
    t = "20250610144000+0000"
    out["hl7/demo_mode_obx8.hl7"] = mllp(
        msh("Monitor", "Clinic", t, "DEMO-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|98|%^%^UCUM||DEMO|||R",
        "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|80|/min^/min^UCUM||DEMO|||R",
    )
    # Perfusion index in MDC_DIM_DIMLESS (issue 16 defect 4; IntelliVue reports PI that way).
    t = "20250610144500+0000"
    out["hl7/perfusion_index_dimless.hl7"] = mllp(
        msh("Monitor", "Clinic", t, "PI-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|96|262688^MDC_DIM_PERCENT^MDC|||||R",
        "OBX|2|NM|150448^MDC_PULS_OXIM_PERF_REL^MDC|1.2.1.3|2.3|262656^MDC_DIM_DIMLESS^MDC|||||R",
    )
    # Two SpO2 channels in one message (issue 16 judgement call 2): kept apart by OBX-4.
    t = "20250610145000+0000"
    out["hl7/two_spo2_channels.hl7"] = mllp(
        msh("Monitor", "Clinic", t, "SPO2-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R",
        "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|94|262688^MDC_DIM_PERCENT^MDC|||||R",
        "OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.2|73|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
    )
    # OBX-11 'X' on ordinary values (issue 16 judgement call 1): withheld; the F beside is kept.
    t = "20250610145500+0000"
    out["hl7/gateway_obx11_x.hl7"] = mllp(
        msh("Gateway", "Clinic", t, "X-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|75|/min^/min^UCUM|||||X",
        "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|96|%^%^UCUM|||||X",
        "OBX|3|NM|151562^MDC_RESP_RATE^MDC|1.1.1.1|14|/min^/min^UCUM|||||F",
    )
    # Every source a chair monitor may send (codes: DK Core IEEEBasicObservation value set).
    t = "20250610150000+0000"
    out["hl7/sources_temperature_rr_pulse.hl7"] = mllp(
        msh("Monitor", "Clinic", t, "SRC-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.1.1|71|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|70|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        "OBX|3|NM|149514^MDC_PULS_RATE^MDC|1.5.1.1|69|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
        f"OBX|4|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.3.1.4|68|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{t}",
        "OBX|5|NM|151578^MDC_TTHOR_RESP_RATE^MDC|1.1.1.1|15|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
        "OBX|6|NM|151594^MDC_CO2_RESP_RATE^MDC|1.6.1.2|14|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
        "OBX|7|NM|151650^MDC_ACOUSTIC_RESP_RATE^MDC|1.8.1.1|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
        "OBX|8|NM|188424^MDC_TEMP_ORAL^MDC|1.4.1.1|36.9|268192^MDC_DIM_DEGC^MDC|||||R",
        "OBX|9|NM|150388^MDC_TEMP_SKIN^MDC|1.4.2.1|33.1|268192^MDC_DIM_DEGC^MDC|||||R",
        "OBX|10|NM|188452^MDC_TEMP_AXILLA^MDC|1.4.3.1|36.4|268192^MDC_DIM_DEGC^MDC|||||R",
        "OBX|11|NM|150392^MDC_TEMP_TYMP^MDC|1.4.4.1|98.6|266560^MDC_DIM_FAHR^MDC|||||R",
    )
    # 149522 labelled as plain pulse rate by a vendor (issue 16 judgement call 3).
    t = "20250610150500+0000"
    out["hl7/vendor_149522_pulse_label.hl7"] = mllp(
        msh("Vendor", "Clinic", t, "PR-0001"),
        "OBR|1||||||" + t,
        "OBX|1|NM|149522^MDC_PULS_RATE^MDC|1.2.1.1|66|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
    )
    return out


def masimo_files() -> dict[str, bytes]:
    def lines(*text: str) -> bytes:
        return b"".join(t.encode("ascii") + b"\r\n" for t in text)

    return {
        # Radical-7 service manual line (quoted by nmenon/masimo-datacapture; devices.md §2.3)
        "masimo/radical7_service_manual.txt": lines(
            "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
            "DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000"
        ),
        # Radical-7 colour, newer firmware (nmenon/masimo-datacapture; devices.md §2.3)
        "masimo/radical7_colour.txt": lines(
            "03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% "
            "SPHB=--.- SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 "
            "EXC1=00000000"
        ),
        # Rad-8 (nmenon/masimo-datacapture; devices.md §2.3)
        "masimo/rad8.txt": lines(
            "03/19/16 13:37:12 SN=0000093112 SPO2=---% BPM=---% DESAT=-- PIDELTA=+-- ALARM=0000 "
            "EXC=000001"
        ),
        # Radical-7 example line of MD PnP poxrad_discrete.h (2012)
        "masimo/radical7_mdpnp.txt": lines(
            "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% "
            "DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820"
        ),
        # Radical-5 example line of MD PnP poxrad_discrete.h (issue 16 defect 5)
        "masimo/radical5_mdpnp.txt": lines(
            "09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800"
        ),
        # Leading NULs (issue 16 defect 6, reported for Rad-7 serial output) and stray control
        # bytes between lines, around the two documented Radical-5/Radical-7 lines.
        "masimo/leading_nuls_and_stray_bytes.txt": b"\x00\x00\x00\x00"
        + lines("09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800")
        + b"\x00\x11\x13\x7f"
        + lines(
            "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% "
            "SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820"
        )
        + b"\x00\x00",
    }


V4 = bytes.fromhex(
    "C0 11 01 00 8C E1 00 00 02 00 02 00 84 00 01 00 07 00 7E 00 21 00 00 00 00 F1 3B 00 74 00"
    " 01 00 01 00 12 34 56 20 25 06 10 14 30 00 00 00 01 00 06 00 00 00 01 00 5A 00 00 00 03 00"
    " 54 00 10 00 01 00 26 09 4B 00 22 00 03 00 1E 4A 05 00 00 0F 20 00 00 00 78 4A 06 00 00 0F"
    " 20 00 00 00 50 4A 07 00 00 0F 20 00 00 00 5D 00 11 00 01 00 0E 09 50 00 0A 41 82 00 00 0A"
    " A0 00 00 00 48 00 12 00 01 00 0E 09 50 00 0A 4B B8 00 00 02 20 00 00 00 62 F9 C8 C1"
)
WRAP_BASE_TIME = datetime(2025, 6, 10, 14, 30, tzinfo=UTC)


def intellivue_files() -> dict[str, bytes]:
    # The relative-time wrap: an MDS create event 3 s before the 32-bit counter wraps, then one
    # poll result per second for 6 s (structures of devices.md §2.1, framed by ketamon's codec;
    # the monitor leaves the poll's absolute time unset, as several models do, §1.6).
    base = iv.REL_TIME_MOD - 3 * iv.TICKS_PER_S
    wrap = iv.encode_frame(
        iv.encode_mds_create_event(
            1,
            base,
            [
                (iv.ATTR_MODE_OP, struct.pack(">H", iv.OPMODE_MONITORING)),
                (iv.ATTR_TIME_ABS, iv.encode_abs_time(WRAP_BASE_TIME)),
                (iv.ATTR_TIME_REL, struct.pack(">I", base)),
            ],
        )
    )
    for k in range(1, 7):
        rel = (base + k * iv.TICKS_PER_S) % iv.REL_TIME_MOD
        obs = iv.NuObsValue(iv.NOM_ECG_CARD_BEAT_RATE, 0, iv.NOM_DIM_BEAT_PER_MIN, 0)
        obs = iv.NuObsValue(obs.physio_id, 0, obs.unit_code, iv.encode_float(70.0 + k))
        wrap += iv.encode_frame(
            iv.encode_poll_reply(
                invoke_id=1 + k,
                action_type=iv.ACT_POLL_EXT,
                poll_number=1,
                rel_time=rel,
                abs_time=iv.ABS_TIME_INVALID,
                observations=[(0x20, [iv.encode_nu_value(obs)])],
            )
        )
    # Demo mode: the MDS operating mode says demo; every value is marked (§2.1 OPMODE_DEMO).
    demo = iv.encode_frame(
        iv.encode_mds_create_event(
            1,
            1000,
            [
                (iv.ATTR_MODE_OP, struct.pack(">H", iv.OPMODE_DEMO)),
                (iv.ATTR_TIME_ABS, iv.encode_abs_time(WRAP_BASE_TIME)),
                (iv.ATTR_TIME_REL, struct.pack(">I", 1000)),
            ],
        )
    ) + iv.encode_frame(
        iv.encode_poll_reply(
            invoke_id=2,
            action_type=iv.ACT_POLL_EXT,
            poll_number=1,
            rel_time=1000 + iv.TICKS_PER_S,
            abs_time=iv.ABS_TIME_INVALID,
            observations=[
                (
                    0x21,
                    [
                        iv.encode_nu_value(
                            iv.NuObsValue(
                                iv.NOM_PULS_OXIM_SAT_O2, 0, iv.NOM_DIM_PERCENT, iv.encode_float(99)
                            )
                        )
                    ],
                )
            ],
        )
    )
    return {
        "intellivue/v4_poll_result.bin": V4,
        "intellivue/relative_time_wrap.bin": wrap,
        "intellivue/demo_mode.bin": demo,
    }


INV = dx.DATA_INVALID


def datex_files() -> dict[str, bytes]:
    # The synthetic displayed-values record of devices.md §2.2 (from the S/5 DRI specification
    # 8005313 struct layout): HR 72, NIBP 120/80/93, SpO2 98 %, PR 72.
    t = 1749565800
    groups = {n: dx.absent_group(n) for n in dx.BASIC_GROUPS}
    groups["ecg"] = dx.Group(3, 0, (72, INV, INV, INV, INV))
    groups["nibp"] = dx.Group(3, 0, (12000, 8000, 9300, 72))
    groups["spo2"] = dx.Group(3, 0, (9800, 72, 350, INV))
    groups["co2"] = dx.Group(0, 0, (0, 0, 0, 0))
    body = dx.encode_phdb_subrecord(t, dx.encode_basic_class(groups))
    header = dx.encode_header(
        data_len=len(body),
        maintype=dx.MT_PHDB,
        subrecords=[(0, dx.SR_DISPLAYED)],
        r_time=t,
        dri_level=10,
    )
    return {"datex/displayed_values_spec.bin": dx.frame(header + body)}


def build() -> dict[str, bytes]:
    return {**hl7_files(), **masimo_files(), **intellivue_files(), **datex_files()}


if __name__ == "__main__":
    for name, data in build().items():
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
