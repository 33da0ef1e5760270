"""The CLI is a separate package: installed as the `ferry` script, importing nothing of
the server (no Django, no Ferry app)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER = ("django", "rest_framework", "controlplane", "endpoints", "transfers", "workers", "engine")


def test_the_cli_imports_nothing_of_the_server():
    code = (
        "import sys, ferry_cli.app\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER!r})\n"
        "print(','.join(bad))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == ""


def test_the_installed_script_runs_and_refuses_a_key_argument():
    script = Path(sys.executable).parent / "ferry"
    assert script.exists(), "the ferry script is missing: run make install (pip install -e ./cli)"
    help_text = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("endpoints", "routes", "transfers", "send", "login"):
        assert command in help_text
    env = {
        **os.environ,
        "FERRY_API_URL": "http://127.0.0.1:9",
        "FERRY_API_KEY": "fy_x_y",
        "FERRY_CONFIG": "/nonexistent",
    }
    down = subprocess.run([script, "transfers", "list"], capture_output=True, text=True, env=env)
    assert down.returncode == 1
    assert "Cannot reach Ferry" in down.stderr and "Traceback" not in down.stderr
    refused = subprocess.run([script, "--api-key", "fy_x_y", "whoami"], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
