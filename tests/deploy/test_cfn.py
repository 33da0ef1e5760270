"""The template reader: short-form tags, IAM statements, offline evaluation of names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import cfn

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_short_form_tags_become_long_form():
    template = cfn.loads(
        """
Conditions:
  East: !Equals [!Ref "AWS::Region", us-east-1]
  NotEast: !Not [!Condition East]
  Both: !And [!Condition East, !Or [!Condition East, !Condition NotEast]]
Resources:
  Thing:
    Type: AWS::Some::Thing
    Properties:
      A: !GetAtt Queue.Arn
      B: !GetAtt [Queue, QueueName]
      C: !GetAtt Bucket.Metadata.Key
      D: !Sub "${Prefix}-x"
      E: !Sub ["${A}-y", {A: !Ref Prefix}]
      F: !If [East, !Join [",", [a, b]], !Ref "AWS::NoValue"]
      G: !Select [0, !Split [",", !ImportValue shared-list]]
      H: !FindInMap [Map, !Ref "AWS::Region", Key]
      I: !Base64 text
      J: !Cidr [10.0.0.0/16, 4, 8]
      K: !GetAZs ""
      L: !Base64 {"Fn::Sub": "mixed ${A}"}
"""
    )
    assert template["Conditions"] == {
        "East": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
        "NotEast": {"Fn::Not": [{"Condition": "East"}]},
        "Both": {"Fn::And": [{"Condition": "East"}, {"Fn::Or": [{"Condition": "East"}, {"Condition": "NotEast"}]}]},
    }
    assert cfn.props(template["Resources"]["Thing"]) == {
        "A": {"Fn::GetAtt": ["Queue", "Arn"]},
        "B": {"Fn::GetAtt": ["Queue", "QueueName"]},
        "C": {"Fn::GetAtt": ["Bucket", "Metadata.Key"]},
        "D": {"Fn::Sub": "${Prefix}-x"},
        "E": {"Fn::Sub": ["${A}-y", {"A": {"Ref": "Prefix"}}]},
        "F": {"Fn::If": ["East", {"Fn::Join": [",", ["a", "b"]]}, {"Ref": "AWS::NoValue"}]},
        "G": {"Fn::Select": [0, {"Fn::Split": [",", {"Fn::ImportValue": "shared-list"}]}]},
        "H": {"Fn::FindInMap": ["Map", {"Ref": "AWS::Region"}, "Key"]},
        "I": {"Fn::Base64": "text"},
        "J": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
        "K": {"Fn::GetAZs": ""},
        "L": {"Fn::Base64": {"Fn::Sub": "mixed ${A}"}},
    }


def test_dates_stay_strings():
    template = cfn.loads("AWSTemplateFormatVersion: 2010-09-09\nResources: {P: {Properties: {Version: 2012-10-17}}}")
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Resources"]["P"]["Properties"]["Version"] == "2012-10-17"


def test_load_names_the_file_on_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("Resources: [unclosed")
    with pytest.raises(ValueError, match=r"broken\.yaml"):
        cfn.load(path)
    path.write_text("- a list")
    with pytest.raises(ValueError, match="a template is a mapping"):
        cfn.load(path)


def test_resources_by_type():
    template = cfn.load(FIXTURES / "good" / "region.yaml")
    assert set(cfn.resources(template, "AWS::ECS::Service")) == {
        "ApiService",
        "WorkerService",
        "BeatService",
        "KeeperService",
        "EventsService",
    }
    assert cfn.resources(template, "AWS::Nothing::Here") == {}


def test_policy_statements_are_identity_policies_only():
    statements = cfn.policy_statements(cfn.load(FIXTURES / "bad" / "region.yaml"))
    # Not the bucket policy (a resource policy) nor any AssumeRolePolicyDocument (trust).
    assert [(s.resource, s.where, s.allows) for s in statements] == [
        ("ExecutionRole", "Policies[0].PolicyDocument.Statement[0]", True),
        ("ExecutionRole", "Policies[0].PolicyDocument.Statement[1]", False),
        ("SharedRole", "Policies[0].PolicyDocument.Statement[0]", True),
        ("WorkerPolicy", "PolicyDocument.Statement[0]", True),
        ("WorkerPolicy", "PolicyDocument.Statement[1]", True),
        ("WorkerPolicy", "PolicyDocument.Statement[2]", True),
    ]
    assert statements[1].label == "ExecutionRole.Policies[0].PolicyDocument.Statement[1] (Sid Guardrail)"


def test_policy_statements_follow_both_branches_of_if():
    statements = cfn.policy_statements(cfn.load(FIXTURES / "good" / "region.yaml"))
    worker = [s.body["Action"] for s in statements if s.resource == "WorkerPolicy"]
    assert worker == [["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"], "s3:PutObject"]


def test_substitute_evaluates_names():
    scope = {"Prefix": "ferry", "AWS::Region": "us-west-2"}
    assert cfn.substitute({"Fn::Sub": "${Prefix}-${AWS::Region}-events"}, scope) == "ferry-us-west-2-events"
    assert cfn.substitute({"Fn::Sub": ["${P}-${Kind}", {"P": {"Ref": "Prefix"}, "Kind": "x"}]}, scope) == "ferry-x"
    assert cfn.substitute({"Fn::Sub": "${!Literal}-${Prefix}"}, scope) == "${Literal}-ferry"
    assert cfn.substitute({"Fn::Join": ["-", [{"Ref": "Prefix"}, "config"]]}, scope) == "ferry-config"
    assert cfn.substitute(900, scope) == "900"
    with pytest.raises(cfn.Unresolved, match=r"Queue\.Arn"):
        cfn.substitute({"Fn::Sub": "${Queue.Arn}"}, scope)
    with pytest.raises(cfn.Unresolved, match="Fn::ImportValue"):
        cfn.substitute({"Fn::ImportValue": "x"}, scope)


def test_parameter_values_prefer_the_file_over_defaults():
    template = {"Parameters": {"Prefix": {"Type": "String", "Default": "ferry"}, "Tag": {"Type": "String"}}}
    assert cfn.parameter_values(template) == {"Prefix": "ferry"}
    assert cfn.parameter_values(template, {"Prefix": "f2", "Tag": "1.0.0"}) == {"Prefix": "f2", "Tag": "1.0.0"}


def test_ref_target():
    assert cfn.ref_target({"Ref": "Queue"}) == "Queue"
    assert cfn.ref_target({"Fn::GetAtt": ["Role", "Arn"]}) == "Role"
    assert cfn.ref_target({"Fn::Sub": "${Role.Arn}"}) == "Role"
    assert cfn.ref_target({"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/x"}) is None
    assert cfn.ref_target("arn:aws:iam::123456789012:role/x") is None
