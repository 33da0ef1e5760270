"""Read CloudFormation YAML templates the way CloudFormation does, for offline checks.

PyYAML knows nothing of the short-form intrinsic functions (``!Ref``, ``!Sub``, ...), so
``load`` turns each into its long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), the form
the checks are written against. Dates stay strings (``Version: 2012-10-17`` unquoted is
common in policies). ``substitute`` evaluates the little that can be known offline: ``Ref``
to parameters and pseudo parameters, ``Fn::Sub`` and ``Fn::Join`` over those.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Short tag → long key. ``!GetAtt`` and ``!Ref``/``!Condition`` have their own constructors.
_FUNCTIONS = {
    "Sub": "Fn::Sub",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "Join": "Fn::Join",
    "FindInMap": "Fn::FindInMap",
    "ImportValue": "Fn::ImportValue",
    "Base64": "Fn::Base64",
    "Cidr": "Fn::Cidr",
    "GetAZs": "Fn::GetAZs",
    "Transform": "Fn::Transform",
    "Length": "Fn::Length",
    "ToJsonString": "Fn::ToJsonString",
}

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


# libyaml's parser when PyYAML was built with it: the region template parses 10x faster.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TemplateLoader(_SafeLoader):
    """SafeLoader plus CloudFormation's short-form tags; timestamps stay strings."""


TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def _node_value(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _function(key: str):
    def construct(loader: Any, node: yaml.Node) -> dict[str, Any]:
        return {key: _node_value(loader, node)}

    return construct


def _get_att(loader: Any, node: yaml.Node) -> dict[str, Any]:
    value = _node_value(loader, node)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


for _short, _long in _FUNCTIONS.items():
    TemplateLoader.add_constructor(f"!{_short}", _function(_long))
TemplateLoader.add_constructor("!Ref", _function("Ref"))
TemplateLoader.add_constructor("!Condition", _function("Condition"))
TemplateLoader.add_constructor("!GetAtt", _get_att)


def loads(text: str) -> dict[str, Any]:
    """Parse a template's text; the long form of every intrinsic function."""
    template = yaml.load(text, Loader=TemplateLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(template, dict):
        raise ValueError(f"a template is a mapping, not {type(template).__name__}")
    return template


def load(path: Path) -> dict[str, Any]:
    """Parse the template at ``path``."""
    try:
        return loads(path.read_text())
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def resources(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Logical id → resource, for every resource of ``type_`` (e.g. ``AWS::SQS::Queue``)."""
    return {
        name: resource
        for name, resource in (template.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") == type_
    }


def props(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's ``Properties`` (an empty dict when it has none)."""
    return resource.get("Properties") or {}


def as_list(value: Any) -> list[Any]:
    """A statement's ``Action``/``Resource`` is a string or a list; always a list here."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def branches(value: Any) -> Iterator[Any]:
    """The concrete values ``value`` may take: both branches of every ``Fn::If``; nothing for
    ``AWS::NoValue`` or an absent (None) value."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            yield from branches(args[1])
            yield from branches(args[2])
            return
    if value is None or value == {"Ref": "AWS::NoValue"}:
        return
    yield value


def items(value: Any) -> Iterator[Any]:
    """The elements of a list that may hold ``Fn::If`` elements (or be one)."""
    for concrete in branches(value):
        if isinstance(concrete, list):
            for element in concrete:
                yield from branches(element)
        else:
            yield concrete


def ref_target(value: Any) -> str | None:
    """The logical id a ``Ref``/``Fn::GetAtt`` (or a ``Fn::Sub`` naming one) points at."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt" and isinstance(arg, list) and arg and isinstance(arg[0], str):
            return arg[0]
        if key == "Fn::Sub" and isinstance(arg, str):
            match = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}", arg)
            return match.group(1) if match else None
    return None


# --- IAM policy statements --------------------------------------------------------------

# Identity policies only: resource policies (bucket, queue, key, bus, topic) and trust
# policies (AssumeRolePolicyDocument) grant to others and are judged differently.
_INLINE_POLICIES = {"AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"}
_POLICY_DOCUMENTS = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy",
}


@dataclass(frozen=True)
class Statement:
    """One IAM policy statement and where it sits in the template."""

    resource: str  # logical id of the role or policy
    where: str  # e.g. "Policies[0].PolicyDocument.Statement[2]"
    body: dict[str, Any]

    @property
    def allows(self) -> bool:
        return self.body.get("Effect") == "Allow"

    @property
    def label(self) -> str:
        sid = self.body.get("Sid")
        return f"{self.resource}.{self.where}" + (f" (Sid {sid})" if sid else "")


def _statements(resource: str, where: str, document: Any) -> Iterator[Statement]:
    for concrete in branches(document):
        if not isinstance(concrete, dict):
            continue
        statements = concrete.get("Statement")
        if isinstance(statements, dict):
            statements = [statements]
        for index, statement in enumerate(statements or []):
            for body in branches(statement):
                if isinstance(body, dict):
                    yield Statement(resource, f"{where}.Statement[{index}]", body)


def policy_statements(template: Mapping[str, Any]) -> list[Statement]:
    """Every identity-policy statement: inline ``Policies`` of roles, users and groups, and
    the ``PolicyDocument`` of ``AWS::IAM::Policy``/``ManagedPolicy``/``RolePolicy``/..."""
    found: list[Statement] = []
    for name, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict):
            continue
        kind = resource.get("Type")
        if kind in _INLINE_POLICIES:
            for index, policy in enumerate(items(props(resource).get("Policies"))):
                if isinstance(policy, dict):
                    found += _statements(name, f"Policies[{index}].PolicyDocument", policy.get("PolicyDocument"))
        elif kind in _POLICY_DOCUMENTS:
            found += _statements(name, "PolicyDocument", props(resource).get("PolicyDocument"))
    return found


# --- evaluating names offline -----------------------------------------------------------


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each parameter's value: ``overrides`` (a parameter file) first, then its ``Default``."""
    values = {
        name: str(spec["Default"])
        for name, spec in (template.get("Parameters") or {}).items()
        if isinstance(spec, dict) and "Default" in spec
    }
    values.update(overrides or {})
    return values


class Unresolved(ValueError):
    """The value depends on something only CloudFormation knows (an attribute, an import)."""


_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


def substitute(value: Any, variables: Mapping[str, str]) -> str:
    """Evaluate a string-valued ``Ref``/``Fn::Sub``/``Fn::Join`` with ``variables``
    (parameters and pseudo parameters such as ``AWS::Region``); raise ``Unresolved`` else."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            if arg in variables:
                return variables[arg]
            raise Unresolved(f"Ref {arg}")
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            scope = {**variables, **{k: substitute(v, variables) for k, v in local.items()}}

            def replace(match: re.Match[str]) -> str:
                if match.group(1):  # ${!Literal} is the text ${Literal}
                    return "${" + match.group(2) + "}"
                if match.group(2) not in scope:
                    raise Unresolved(f"${{{match.group(2)}}} in {text!r}")
                return scope[match.group(2)]

            return _SUB_VARIABLE.sub(replace, text)
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(substitute(part, variables) for part in arg[1])
    kind = next(iter(value)) if isinstance(value, dict) and value else type(value).__name__
    raise Unresolved(f"{kind} is known only to CloudFormation")
