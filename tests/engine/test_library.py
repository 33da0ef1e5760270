"""The engine is a library: importing every module of it loads nothing of Ferry's apps and
no Django (issue 12; DESIGN §1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "rest_framework", "celery", "controlplane", "endpoints", "transfers", "workers")

# A fresh interpreter, so nothing the test run imported counts.
PROBE = """
import json, pkgutil, importlib, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_engine_module_loads_no_ferry_app_and_no_django():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    report = json.loads(out)
    assert "engine.copy" in report["imported"] and "engine.config" in report["imported"]
    leaked = [m for m in report["loaded"] if m.split(".")[0] in FORBIDDEN]
    assert leaked == []
