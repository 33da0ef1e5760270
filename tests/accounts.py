"""Several AWS accounts in one emulator, for tests of who may read what.

moto keeps resources per account and tells the caller's account by its access key: keys
of IAM users it created and credentials from ``AssumeRole`` belong to their account;
anything else is its default account (123456789012, where Ferry's own clients act). So a
test reaches account X by assuming a role there (moto lets the default account assume a
role that does not exist) and creates what it needs with those credentials.
"""

from __future__ import annotations

import json
import uuid

import boto3

FERRY_ACCOUNT = "123456789012"  # the emulator's default account: Ferry's own clients


def session(account: str) -> boto3.session.Session:
    """A session acting in ``account`` (temporary credentials of a role there)."""
    sts = boto3.client("sts", region_name="us-east-1")
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/ferry-test-admin-{uuid.uuid4().hex[:8]}", RoleSessionName="ferry-test"
    )["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def user_keys(account: str) -> dict[str, str]:
    """Access keys of a new IAM user in ``account``: an endpoint's credentials."""
    iam = session(account).client("iam")
    name = f"ferry-test-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def bucket_of(account: str, *objects: str) -> str:
    """A new bucket owned by ``account``, holding ``objects`` (keys)."""
    s3 = session(account).client("s3")
    name = f"ferry-acct-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    for key in objects:
        s3.put_object(Bucket=name, Key=key, Body=b"payroll\n")
    return name


def grant_read(owner: str, bucket: str, reader: str, *, prefix: str = "") -> None:
    """The bucket owner's policy lets account ``reader`` get objects under ``prefix``."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{reader}:root"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            }
        ],
    }
    session(owner).client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def role_arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def role_trusting(account: str, name: str, external_ids: list[str], *, principal: str = FERRY_ACCOUNT) -> str:
    """A role in ``account`` that ``principal``'s account may assume with one of
    ``external_ids`` (the trust policy docs/endpoints.md tells customers to write);
    returns its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{principal}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_ids}},
            }
        ],
    }
    iam = session(account).client("iam")
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
