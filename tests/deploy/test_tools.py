"""The infrastructure checkers over the image and the templates: hadolint, cfn-lint, checkov.

Offline and without the database. The tools come from ``.venv-iac`` (``make iac-tools``)
or ``$FERRY_IAC_BIN``; when they are missing these tests fail, they never skip.
"""

from __future__ import annotations

import re

from tests.deploy.tools import (
    AWS_DIR,
    DOCKERFILE,
    ROOT,
    checkov,
    describe,
    inline_skip_problems,
    load_suppressions,
    required_templates,
    run,
    suppression_problems,
    tool,
)

FIXTURES = ROOT / "tests" / "deploy" / "fixtures"
# cfn-lint checks each resource type and property against both regions' specifications.
REGIONS = ("us-east-1", "us-west-2")


def test_dockerfile_passes_hadolint(tmp_path):
    # No user or XDG configuration may relax the rules: an empty home, the repository's cwd.
    completed = run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        timeout=60,
        env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, f"hadolint {DOCKERFILE}:\n{completed.stdout}{completed.stderr}"


def test_dockerfile_pins_base_runs_unprivileged_and_checks_health():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base) for base in bases), (
        f"{DOCKERFILE}: base image {bases} is not pinned to a patch release (python:3.11.N-slim-bookworm)"
    )
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), (
        f"{DOCKERFILE}: the last USER is {users[-1:]}, not a numeric non-root uid"
    )
    assert health and "/app/deploy/healthcheck.py" in health[-1], (
        f"{DOCKERFILE}: no HEALTHCHECK running deploy/healthcheck.py"
    )
    # The tasks' read-only root filesystem leaves /tmp (a volume) writable only when the image
    # declares it, so that Fargate copies its ownership (uid 10001) into the volume.
    assert 'VOLUME ["/tmp"]' in lines, f'{DOCKERFILE}: no VOLUME ["/tmp"]'


def test_dockerfile_pins_the_rds_ca_bundle_where_the_settings_look():
    # The build fetches the bundle and fails on another SHA-256; the production settings
    # verify the database against that file (controlplane/dbtls.py).
    from controlplane.dbtls import RDS_CA_BUNDLE

    text = DOCKERFILE.read_text().replace("\\\n", " ")
    adds = [line.split() for line in text.splitlines() if line.strip().startswith("ADD ")]
    bundle = [a for a in adds if "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in a]
    assert bundle, f"{DOCKERFILE}: no ADD of the RDS global bundle"
    words = bundle[0]
    assert any(re.fullmatch(r"--checksum=sha256:[0-9a-f]{64}", w) for w in words), f"{DOCKERFILE}: bundle not pinned"
    assert words[-1] == RDS_CA_BUNDLE, f"{DOCKERFILE}: bundle at {words[-1]}, settings read {RDS_CA_BUNDLE}"
    assert "--chmod=644" in words, f"{DOCKERFILE}: the bundle must be readable by uid 10001"


def test_templates_pass_cfn_lint():
    templates = required_templates()
    completed = run(
        [tool("cfn-lint"), "--regions", *REGIONS, "--", *(str(t.relative_to(ROOT)) for t in templates)], timeout=300
    )
    # Exit status bits: 2 errors, 4 warnings, 8 informational; all count.
    assert completed.returncode == 0, (
        f"cfn-lint exited {completed.returncode} (2 error, 4 warning, 8 informational, or-ed) over "
        f"{', '.join(t.name for t in templates)}:\n{completed.stdout}{completed.stderr}"
    )


def test_good_fixture_is_a_valid_template():
    """The structural checks are shown silent on fixtures/good; it must be real CloudFormation."""
    fixtures = sorted((FIXTURES / "good").glob("*.yaml"))
    completed = run([tool("cfn-lint"), "--regions", *REGIONS, "--", *map(str, fixtures)], timeout=300)
    assert completed.returncode == 0, f"cfn-lint over {FIXTURES / 'good'}:\n{completed.stdout}{completed.stderr}"


def test_templates_pass_checkov():
    templates = required_templates()
    suppressions = load_suppressions()
    result = checkov(AWS_DIR, skip=sorted(suppressions))

    assert not result.parsing_errors, f"checkov could not parse: {result.parsing_errors}"
    # A resource's own skip (Metadata checkov: skip) is finer than a global one, but says why.
    assert not inline_skip_problems(result.skipped), "\n".join(inline_skip_problems(result.skipped))
    assert not result.failed, (
        f"{len(result.failed)} checkov checks failed in {AWS_DIR.relative_to(ROOT)}:\n"
        + "\n".join(f"  {describe(check)}" for check in result.failed)
    )
    # A template checkov could not read as CloudFormation is skipped silently: no checks at all.
    unevaluated = [t.name for t in templates if result.evaluated[t.name] == 0]
    assert not unevaluated, f"checkov evaluated no check in {unevaluated}: it did not read them as CloudFormation"


def test_checkov_reports_failures_of_a_bad_template():
    """The reading of checkov's output: failures, their places, and per-file counts."""
    result = checkov(FIXTURES / "bad")
    failed = {(check["check_id"], check["resource"]) for check in result.failed}
    assert ("CKV_AWS_21", "AWS::S3::Bucket.StagingBucket") in failed  # versioning
    assert ("CKV_AWS_66", "AWS::Logs::LogGroup.LogGroup") in failed  # retention
    assert ("CKV_AWS_28", "AWS::DynamoDB::Table.SettingsTable") in failed  # point-in-time recovery
    assert result.evaluated["region.yaml"] > 0
    assert result.evaluated["global.yaml"] > 0
    assert "CKV_AWS_21 AWS::S3::Bucket.StagingBucket at region.yaml:" in "\n".join(map(describe, result.failed))

    # The fixture's LogGroup skips CKV_AWS_158 in its Metadata, without saying why.
    assert [(check["check_id"], check["resource"]) for check in result.skipped] == [
        ("CKV_AWS_158", "AWS::Logs::LogGroup.LogGroup")
    ]
    assert inline_skip_problems(result.skipped) == [
        "CKV_AWS_158 AWS::Logs::LogGroup.LogGroup at region.yaml:63-68: Ensure that CloudWatch Log Group is "
        "encrypted by KMS: skipped in the template without a reason (comment: 'No comment provided')"
    ]

    skipped = checkov(FIXTURES / "bad", skip=["CKV_AWS_21", "CKV_AWS_66"])
    assert {check["check_id"] for check in skipped.failed} & {"CKV_AWS_21", "CKV_AWS_66"} == set()


def test_suppression_list_rules():
    assert suppression_problems({"CKV_AWS_27": "SQS-managed SSE (SSE-SQS) is on; a CMK adds cost only."}) == []
    assert suppression_problems(None) == []
    assert suppression_problems({f"CKV_AWS_{n}": "a real reason here" for n in range(13)}) == [
        "13 suppressions; at most 12: fix the template instead"
    ]
    assert suppression_problems({"CKV_AWS_1": "", "CKV_AWS_2": "ok", "CKV_AWS_3": None, "S3_VERSIONING": "a b c"}) == [
        "CKV_AWS_1: the reason must be a sentence saying why, not ''",
        "CKV_AWS_2: the reason must be a sentence saying why, not 'ok'",
        "CKV_AWS_3: the reason must be a sentence saying why, not None",
        "'S3_VERSIONING' is not a checkov check id (CKV_AWS_123, CKV2_AWS_12)",
    ]
    assert suppression_problems(["CKV_AWS_27"]) == ["must be a mapping of check id to reason, not list"]
