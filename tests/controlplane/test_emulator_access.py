"""The emulator refuses, as AWS does, what moto alone accepts: another account's bucket
without a grant, a wrong ExpectedBucketOwner, an AssumeRole the trust policy does not
allow (deploy/local/moto_server.py; docs/aws-constraints.md)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from deploy.local import moto_server
from tests import accounts

A, B = "111111111111", "222222222222"


def status(call) -> int | str:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "ok"


def test_another_accounts_bucket_is_403_until_its_policy_grants_the_reader(moto):
    bucket = accounts.bucket_of(A, "in/a.csv", "out/b.csv")
    s3_a, s3_b = accounts.session(A).client("s3"), accounts.session(B).client("s3")
    assert status(lambda: s3_a.head_object(Bucket=bucket, Key="in/a.csv")) == "ok"
    assert status(lambda: s3_b.head_object(Bucket=bucket, Key="in/a.csv")) == "403"
    assert status(lambda: s3_b.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    assert status(lambda: s3_b.put_object(Bucket=bucket, Key="in/x", Body=b"x")) == "AccessDenied"

    accounts.grant_read(A, bucket, B, prefix="in/")
    assert status(lambda: s3_b.head_object(Bucket=bucket, Key="in/a.csv")) == "ok"
    assert status(lambda: s3_b.head_object(Bucket=bucket, Key="out/b.csv")) == "403"  # not granted
    assert status(lambda: s3_b.list_objects_v2(Bucket=bucket)) == "AccessDenied"  # GetObject only


def test_a_wrong_expected_bucket_owner_is_403(moto):
    bucket = accounts.bucket_of(A, "k")
    s3_a = accounts.session(A).client("s3")
    assert status(lambda: s3_a.head_object(Bucket=bucket, Key="k", ExpectedBucketOwner=A)) == "ok"
    assert status(lambda: s3_a.head_object(Bucket=bucket, Key="k", ExpectedBucketOwner=B)) == "403"
    assert status(lambda: s3_a.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=B)) == "AccessDenied"


def test_assume_role_follows_the_trust_policy_and_its_external_id(moto):
    import boto3

    arn = accounts.role_trusting(A, "ferry-trust-test", ["issued-by-ferry-1"])
    sts = boto3.client("sts", region_name="us-east-1")  # Ferry's account in the emulator

    def assume(**extra):
        return lambda: sts.assume_role(RoleArn=arn, RoleSessionName="ferry-test", **extra)

    assert status(assume(ExternalId="issued-by-ferry-1")) == "ok"
    assert status(assume(ExternalId="chosen-by-someone")) == "AccessDenied"
    assert status(assume()) == "AccessDenied"
    # Another account is not the trusted principal, whatever external id it sends.
    other = accounts.session(B).client("sts")
    assert status(lambda: other.assume_role(RoleArn=arn, RoleSessionName="x-test", ExternalId="issued-by-ferry-1")) == (
        "AccessDenied"
    )


# --- the rules as pure functions ---------------------------------------------------------------


def _policy(**statement) -> str:
    return json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", **statement}]}
    )


@pytest.mark.parametrize(
    ("principal", "granted"),
    [
        ({"AWS": f"arn:aws:iam::{B}:root"}, True),
        ({"AWS": B}, True),
        ({"AWS": [f"arn:aws:iam::{A}:root", f"arn:aws:iam::{B}:role/reader"]}, True),
        ("*", True),
        ({"AWS": f"arn:aws:iam::{A}:root"}, False),
        ({"Service": "s3.amazonaws.com"}, False),
    ],
)
def test_bucket_policy_principals(principal, granted):
    assert (
        moto_server.policy_allows(
            _policy(Principal=principal), action="s3:GetObject", resource="arn:aws:s3:::b/k", account=B
        )
        is granted
    )


def test_bucket_policy_deny_conditions_and_actions():
    grant = {"Effect": "Allow", "Principal": "*", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"}
    document = json.dumps({"Statement": [grant, deny]})
    assert moto_server.policy_allows(document, action="s3:GetObject", resource="arn:aws:s3:::b/k", account=B)
    assert not moto_server.policy_allows(document, action="s3:GetObject", resource="arn:aws:s3:::b/secret/k", account=B)
    assert not moto_server.policy_allows(document, action="s3:PutObject", resource="arn:aws:s3:::b/k", account=B)
    conditional = json.dumps({"Statement": [{**grant, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]})
    assert not moto_server.policy_allows(conditional, action="s3:GetObject", resource="arn:aws:s3:::b/k", account=B)
    assert not moto_server.policy_allows(None, action="s3:GetObject", resource="arn:aws:s3:::b/k", account=B)
