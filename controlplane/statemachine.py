"""The transfer state machine's definition (Amazon States Language), as the repository keeps it.

``deploy/aws/statemachine/transfer.asl.json`` is the one definition: CloudFormation's
``DefinitionSubstitutions`` fills in ``${StepQueueUrl}`` on AWS, and :func:`definition` makes
the same string substitution for the emulator (``controlplane.bootstrap``) and the tests.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

ASL_PATH = Path(__file__).resolve().parents[1] / "deploy" / "aws" / "statemachine" / "transfer.asl.json"
PLACEHOLDER = "${StepQueueUrl}"
# The steps the definition's Task states send, in the order a transfer goes through them.
STEPS = ("intake", "stage", "deliver", "source_action")


@cache
def template() -> str:
    """The file's text, ``${StepQueueUrl}`` still in it."""
    return ASL_PATH.read_text()


def definition(step_queue_url: str) -> str:
    """The definition with the region's step queue filled in (valid JSON; the URL is escaped
    as a JSON string, which a queue URL never needs)."""
    if not step_queue_url or '"' in step_queue_url or "\\" in step_queue_url:
        raise ValueError(f"not a queue URL: {step_queue_url!r}")
    text = template().replace(PLACEHOLDER, step_queue_url)
    json.loads(text)  # refuse a broken file here rather than in CreateStateMachine
    return text
