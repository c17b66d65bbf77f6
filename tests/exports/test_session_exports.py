"""``ketamon export``: each format from a recorded session (corrections, flags, an addendum and a
signature), checked against the database; and every bad input or fault gives one clear error,
a non-zero exit and no file."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketamon.cli import main
from ketamon.exports import ExportError, export_session
from ketamon.exports.fhir import validate_bundle
from ketamon.resources import resource
from ketamon.services import open_database
from ketamon.storage.history import session_readings
from ketamon.storage.models import AuditEntry, VitalReading
from ketamon.storage.repository import SqlSessionRepository
from tests.exports.recorded import MONITOR, Recorded, record_session

ROOT = Path(__file__).resolve().parent.parent.parent
PNG_DIR = ROOT / "build" / "exports"  # rendered pages, kept to look at


@pytest.fixture
def rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    return record_session(f"sqlite:///{tmp_path / 'ketamon.sqlite3'}", monkeypatch)


def export(rec: Recorded, fmt: str, out: Path | str, *extra: str) -> int:
    return main(
        ["export", str(rec.sid), "--format", fmt, "--out", str(out), "--db", rec.url, *extra]
    )


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ketamon: error: "), err
    return lines[0]


def _db_readings(url: str, sid: int) -> list[VitalReading]:
    engine = open_database(url)
    try:
        with Session(engine) as s:
            return list(
                s.scalars(
                    select(VitalReading)
                    .where(VitalReading.session_id == sid)
                    .order_by(VitalReading.host_time, VitalReading.id)
                )
            )
    finally:
        engine.dispose()


def _check(doc: Any, schema: dict[str, Any], where: str = "$") -> None:
    """The parts of JSON Schema the export's schema uses: type, const, enum, required,
    properties, items."""
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "null": type(None),
    }
    if "const" in schema:
        assert doc == schema["const"], where
    if "enum" in schema:
        assert doc in schema["enum"], where
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(isinstance(doc, types[t]) for t in allowed), f"{where}: {type(doc)}"
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            assert key in doc, f"{where}: missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                _check(doc[key], sub, f"{where}.{key}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            _check(item, schema["items"], f"{where}[{i}]")


# ---- JSON ------------------------------------------------------------------------------------


def test_json_is_the_record_and_its_fold_and_follows_the_published_schema(
    rec: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.json"
    assert export(rec, "json", out) == 0
    assert "export: wrote" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    schema = json.loads(resource("export", "session-export-1.schema.json").read_text())
    _check(doc, schema)
    engine = open_database(rec.url)
    try:
        entries = SqlSessionRepository(engine).load(rec.sid)
    finally:
        engine.dispose()
    assert [e["id"] for e in doc["entries"]] == [e.id for e in entries]
    assert doc["session"]["status"] == "addendum" and doc["session"]["entry_count"] == len(entries)
    (corr,) = doc["corrections"]
    assert (corr["target_id"], corr["old"], corr["new"]) == (
        rec.corrected_moaas,
        {"score": 4},
        {"score": 3},
    )
    assert corr["reason"] == "misread the response" and corr["by"] == "Nina Nurse"
    moaas = [o for o in doc["observations"] if o["entry_id"] == rec.corrected_moaas]
    assert moaas[0]["score"] == 3 and moaas[0]["corrected"] is True
    actions = [(a["key"], a["action"]) for a in doc["alarms"] if a["key"].startswith("spo2")]
    assert [a for _, a in actions] == ["raised", "acknowledged", "cleared"]
    assert doc["signature"]["name"] == "Dr Paul Physician" and doc["signature"]["credentials"]
    assert len(doc["signature"]["content_sha256"]) == 64
    assert doc["addenda"][0]["text"] == "Called the patient next day: well."
    assert [d["lot"] for d in doc["doses"]] == ["LOT-A", "LOT-B"]
    assert len(doc["readings"]) == len(_db_readings(rec.url, rec.sid))
    assert doc["figures"]["lowest_spo2"] == 85.0
    assert doc["timeline"][-1]["kind"] == "addendum"


# ---- CSV -------------------------------------------------------------------------------------


def test_csv_zip_loads_with_pandas_and_every_value_equals_the_database(
    rec: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "s.zip"
    assert export(rec, "csv", out) == 0
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["alarms.csv", "doses.csv", "observations.csv"]
        frames = {n: pd.read_csv(io.BytesIO(z.read(n))) for n in z.namelist()}
    obs = frames["observations.csv"]
    assert list(obs.columns)[:6] == [
        "session_id",
        "time_utc",
        "minutes_since_first_dose",
        "parameter",
        "value",
        "unit",
    ]
    assert obs["time_utc"].str.endswith("+00:00").all()
    db = _db_readings(rec.url, rec.sid)
    stored = obs[obs["entry_id"].isna()]  # readings (scales carry their entry id)
    assert len(stored) == len(db) == rec.monitor_readings + 2
    by_key = {
        (r.host_time.isoformat(), r.parameter): r for r in db
    }  # one reading per parameter per moment here
    assert len(by_key) == len(db)
    for row in stored.itertuples():
        r = by_key[(row.time_utc, row.parameter)]
        assert row.value == r.value and row.unit == r.unit
        assert row.source == ("manual" if r.source == "manual" else "monitor")
        assert (row.device if isinstance(row.device, str) else "") == (
            "" if r.source == "manual" else r.source
        )
        if row.source == "monitor":
            assert row.device == MONITOR
    hr = stored[stored["parameter"] == "hr"].iloc[0]
    assert (
        hr["unit"] == "/min" and hr["mdc_code"] == 147842 and hr["mdc_ref"] == "MDC_ECG_HEART_RATE"
    )
    first = pd.Timestamp("2026-11-30T09:00:00+00:00")
    mins = (pd.to_datetime(stored["time_utc"]) - first).dt.total_seconds() / 60
    assert (mins.round(4) == stored["minutes_since_first_dose"]).all()
    manual = stored[stored["source"] == "manual"]
    assert sorted(manual["value"]) == [88.0, 138.0] and (manual["quality"] == "manual").all()
    scales = obs[obs["parameter"] == "moaas"]
    assert list(scales["value"]) == [3.0, 5.0]
    assert scales.iloc[0]["quality"] == "manual;corrected"
    doses = frames["doses.csv"]
    assert list(doses["lot"]) == ["LOT-A", "LOT-B"] and list(doses["dose_mg"]) == [28.0, 28.0]
    assert list(doses["minutes_since_first_dose"]) == [0.0, 5.0]
    alarms = frames["alarms.csv"]
    spo2 = alarms[alarms["key"].str.startswith("spo2")]
    assert list(spo2["action"]) == ["raised", "acknowledged", "cleared"]
    assert spo2.iloc[1]["by"] == "Nina Nurse"


def test_csv_into_a_folder_gives_three_sibling_files(rec: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    assert export(rec, "csv", out) == 0
    for name in ("observations.csv", "doses.csv", "alarms.csv"):
        frame = pd.read_csv(out / name)
        assert len(frame.columns) > 5
    assert len(pd.read_csv(out / "doses.csv")) == 2


# ---- FHIR ------------------------------------------------------------------------------------


def test_the_fhir_bundle_validates_and_carries_every_part(rec: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "s.fhir.json"
    assert export(rec, "fhir", out) == 0
    doc = json.loads(out.read_text())
    bundle = validate_bundle(doc)
    assert bundle.type == "collection"
    kinds: dict[str, list[dict[str, Any]]] = {}
    for e in doc["entry"]:
        kinds.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    assert len(kinds["Patient"]) == 1 and kinds["Patient"][0]["birthDate"] == "1980-02-03"
    assert kinds["Encounter"][0]["status"] == "finished"
    assert [d["deviceName"][0]["name"] for d in kinds["Device"]] == [MONITOR]
    obs = kinds["Observation"]
    panels = [o for o in obs if o["code"]["coding"][0]["code"] == "85354-9"]
    db = _db_readings(rec.url, rec.sid)
    cuffs = [r for r in db if r.parameter == "nibp_sys"]
    assert len(panels) == len(cuffs)
    typed = [p for p in panels if p.get("method")]
    (manual,) = typed
    assert [c["valueQuantity"]["value"] for c in manual["component"]] == [138.0, 88.0]
    full = next(p for p in panels if len(p["component"]) == 3)
    assert [c["code"]["coding"][0]["code"] for c in full["component"]] == [
        "8480-6",
        "8462-4",
        "8478-0",
    ]
    assert [c["code"]["coding"][1]["system"] for c in full["component"]] == [
        "urn:iso:std:iso:11073:10101"
    ] * 3
    assert full["component"][0]["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert full["device"]["reference"].startswith("urn:uuid:")
    spo2 = [o for o in obs if o["code"]["coding"][0]["code"] == "59408-5"]
    assert len(spo2) == sum(1 for r in db if r.parameter == "spo2")
    assert {c["code"] for c in spo2[0]["code"]["coding"]} == {"59408-5", "150456"}
    assert spo2[0]["valueQuantity"]["code"] == "%"
    scales = {
        o["code"]["coding"][0]["code"]: o
        for o in obs
        if o["category"][0]["coding"][0]["code"] == "survey"
    }
    assert scales["moaas"]["valueInteger"] in (3, 5) and "cadss-total" in scales
    corrected = [o for o in obs if o["status"] == "amended"]
    assert len(corrected) == 1 and corrected[0]["valueInteger"] == 3
    meds = kinds["MedicationAdministration"]
    assert [m["contained"][0]["batch"]["lotNumber"] for m in meds] == ["LOT-A", "LOT-B"]
    assert meds[0]["dosage"]["dose"] == {
        "value": 28.0,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    (sae,) = kinds["AdverseEvent"]
    assert sae["seriousness"]["coding"][0]["code"] == "serious"
    assert "Psychotic" in sae["event"]["text"]
    provs = kinds["Provenance"]
    assert len(provs) == 2  # the signature and the addendum's
    sig = provs[0]["signature"][0]
    manifest = json.loads(__import__("base64").b64decode(sig["data"]))
    assert manifest["name"] == "Dr Paul Physician" and len(manifest["content_sha256"]) == 64
    assert provs[0]["entity"][0]["what"]["identifier"]["value"] == manifest["content_sha256"]
    assert len(provs[0]["target"]) > 100


def test_fhir_can_be_thinned_when_asked(rec: Recorded, tmp_path: Path) -> None:
    full, thin = tmp_path / "a.json", tmp_path / "b.json"
    assert export(rec, "fhir", full) == 0
    assert export(rec, "fhir", thin, "--downsample", "300") == 0
    count = [len(json.loads(p.read_text())["entry"]) for p in (full, thin)]
    assert count[1] < count[0] / 2


# ---- PDF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "points"), [("a4", "595 x 842"), ("letter", "612 x 792")])
def test_the_pdf_fits_the_page_and_shows_the_whole_record_and_the_signatures(
    rec: Recorded, tmp_path: Path, size: str, points: str
) -> None:
    out = tmp_path / f"s-{size}.pdf"
    assert export(rec, "pdf", out, "--page-size", size) == 0
    assert out.read_bytes().startswith(b"%PDF")
    if shutil.which("pdfinfo") is None or shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils is not installed: the PDF's pages are not checked")
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True).stdout
    assert points in info
    text = subprocess.run(
        ["pdftotext", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    for words in (
        "Alex Q Demo",
        "MRN-9",
        "LOT-A",
        "LOT-B",
        "misread the response",
        "score 4 → 3",
        "acknowledged",
        "Psychotic symptoms",
        "Dr Paul Physician",
        "Called the patient next day",
        "Signatures",
    ):
        assert words in flat, words
    engine = open_database(rec.url)
    try:
        entries = SqlSessionRepository(engine).load(rec.sid)
    finally:
        engine.dispose()
    sig = next(e for e in entries if e.kind.value == "signed")
    assert sig.data["content_sha256"] in flat.replace(" ", "")


def test_the_pdf_renders_to_png_with_the_signature_block(rec: Recorded, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: the pages are not rendered")
    out = tmp_path / "s.pdf"
    assert export(rec, "pdf", out) == 0
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    prefix = PNG_DIR / "session"
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(out), str(prefix)], check=True, timeout=60)
    pages = sorted(PNG_DIR.glob("session-*.png"))
    assert pages and all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
    # the page with the signature block: found by its text, and it is a real rendered page
    texts = [
        subprocess.run(
            ["pdftotext", "-f", str(i), "-l", str(i), str(out), "-"],
            capture_output=True,
            text=True,
        ).stdout
        for i in range(1, len(pages) + 1)
    ]
    signed = [i for i, t in enumerate(texts) if "Signed by" in t]
    assert signed and pages[signed[-1]].stat().st_size > 20_000


# ---- audit -----------------------------------------------------------------------------------


def test_each_export_is_audited_and_the_trail_stays_intact(
    rec: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.json"
    assert export(rec, "json", out) == 0
    engine = open_database(rec.url)
    try:
        with Session(engine) as s:
            rows = list(s.scalars(select(AuditEntry).where(AuditEntry.entity == "export")))
    finally:
        engine.dispose()
    (row,) = rows
    new = json.loads(row.new_value or "{}")
    assert new["paths"] == [str(out)] and new["format"] == "json"
    assert new["sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    assert row.session_id == rec.sid and "OS user" in (row.reason or "")
    capsys.readouterr()
    assert main(["audit", "verify", "--db", rec.url]) == 0


# ---- bad input and faults --------------------------------------------------------------------


def test_an_unknown_session_is_one_error(
    rec: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    assert main(["export", "999", "--format", "json", "--out", str(out), "--db", rec.url]) == 2
    assert "there is no session 999" in _one_error(capsys)
    assert not out.exists()


def test_fhir_of_an_unsigned_session_is_refused_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = record_session(
        f"sqlite:///{tmp_path / 'u.sqlite3'}", monkeypatch, minutes=125, sign=False, every_s=300
    )
    out = tmp_path / "u.json"
    assert export(rec, "fhir", out) == 2
    line = _one_error(capsys)
    assert "not signed" in line and "fhir" in line and "Provenance" in line
    assert not out.exists()
    assert export(rec, "json", out) == 0  # the other formats do not need a signature


def test_an_unwritable_path_is_one_error_and_leaves_nothing(
    rec: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such" / "s.pdf"
    assert export(rec, "pdf", missing) == 2
    assert "does not exist" in _one_error(capsys)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert export(rec, "json", folder) == 2
    assert "is a folder" in _one_error(capsys)
    assert list(folder.iterdir()) == []


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only: CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_one_error_and_leaves_no_partial_file(
    rec: Recorded, small_mount: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_mount / "s.pdf"  # the PDF is some 270 kB: it cannot fit in 64 KiB
    assert export(rec, "pdf", out) == 2
    line = _one_error(capsys)
    assert "disk is full" in line and str(out) in line
    assert list(small_mount.iterdir()) == []  # no file, no temporary file
    (small_mount / "old.json").write_text("{}")  # an earlier export stays as it was
    assert export(rec, "json", small_mount / "old.json") == 2
    assert "disk is full" in _one_error(capsys)
    assert (small_mount / "old.json").read_text() == "{}"
    assert sorted(p.name for p in small_mount.iterdir()) == ["old.json"]


def test_a_read_only_file_system_is_one_error(
    rec: Recorded, small_mount: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    assert export(rec, "csv", small_mount / "s.zip") == 2
    assert "read-only" in _one_error(capsys)


def test_export_session_is_callable_without_the_command_line(
    rec: Recorded, tmp_path: Path
) -> None:
    """What the review screen calls off the UI thread: entries and readings in, a file out."""
    engine = open_database(rec.url)
    try:
        entries = SqlSessionRepository(engine).load(rec.sid)
        readings = session_readings(engine, rec.sid)
    finally:
        engine.dispose()
    result = export_session(entries, readings, "fhir", tmp_path / "b.json", exported_by="paul")
    assert result.paths == (tmp_path / "b.json",) and result.counts["resources"] > 100
    assert result.bytes == (tmp_path / "b.json").stat().st_size


def test_an_invalid_bundle_is_refused(rec: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "s.fhir.json"
    assert export(rec, "fhir", out) == 0
    doc = json.loads(out.read_text())
    validate_bundle(doc, vital_sample=5)
    doc["entry"][-1]["resource"]["recorded"] = "not a time"  # the last Provenance
    with pytest.raises(ExportError, match="does not validate"):
        validate_bundle(doc, vital_sample=5)
