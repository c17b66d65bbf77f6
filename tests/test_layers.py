"""Layer rules (pyproject [tool.importlinter]) hold, checked by import-linter itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def test_domain_and_devices_import_without_qt_or_sqlalchemy() -> None:
    code = (
        "import sys, devices.supervisor, devices.protocols.simulator, ketamon.domain.alarms, "
        "ketamon.domain.thresholds, ketamon.domain.record, ketamon.acquisition.buffers, "
        "ketamon.acquisition.pipeline, ketamon.core.session, ketamon.core.read_models;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('PySide6','sqlalchemy','pyqtgraph')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_acquisition_imports_only_qtcore() -> None:
    import ast

    bad = []
    for path in [
        *(ROOT / "ketamon" / "acquisition").rglob("*.py"),
        *(ROOT / "ketamon" / "presenters").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith("PySide6") and n != "PySide6.QtCore"
            ]
    assert not bad
