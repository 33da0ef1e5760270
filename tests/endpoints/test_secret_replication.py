"""Endpoint secrets are replicated to the other region (FERRY_SECRET_REPLICA_REGIONS), so
that region's workers read credentials locally when this one is lost. Moto server."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import override_settings

from controlplane import aws
from endpoints import secrets


def _replica_client():
    return aws.client("secretsmanager", region="us-west-2")


@override_settings(FERRY_SECRET_REPLICA_REGIONS=["us-west-2"])
def test_a_new_secret_is_replicated_and_readable_in_the_other_region(moto):
    tenant, endpoint = uuid.uuid4(), uuid.uuid4()
    stored = secrets.store(tenant_id=tenant, endpoint_id=endpoint, credentials={"password": "first-Secret-1"})

    described = aws.client("secretsmanager").describe_secret(SecretId=stored.arn)
    assert [(r["Region"], r["Status"]) for r in described.get("ReplicationStatus", [])] == [("us-west-2", "InSync")]
    replica = _replica_client().get_secret_value(SecretId=secrets.secret_name(tenant, endpoint))
    assert json.loads(replica["SecretString"]) == {"password": "first-Secret-1"}


@override_settings(FERRY_SECRET_REPLICA_REGIONS=["us-east-1", ""])
def test_the_own_region_and_blanks_are_not_replica_regions(moto):
    assert secrets.replica_regions() == []
    stored = secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "x-Secret-2"})
    assert "ReplicationStatus" not in aws.client("secretsmanager").describe_secret(SecretId=stored.arn)


@override_settings(FERRY_SECRET_REPLICA_REGIONS=[])  # production's default (the local profile replicates)
def test_without_the_setting_nothing_is_replicated(moto):
    stored = secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "y-Secret-3"})
    assert "ReplicationStatus" not in aws.client("secretsmanager").describe_secret(SecretId=stored.arn)
    with pytest.raises(Exception, match="ResourceNotFound"):
        _replica_client().get_secret_value(SecretId=stored.arn.replace(":us-east-1:", ":us-west-2:"))
