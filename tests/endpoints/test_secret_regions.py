"""Endpoint secrets across regions, on the moto server (whose Secrets Manager keeps a
backend per region and replicates into it as AWS does: a replica has the primary's ARN
with its own region, the same version ids, and refuses writes).

A process reads from its own region (FERRY_REGION) and writes at the primary's region.
Here the test process plays either region with ``override_settings(FERRY_REGION=...)``.
"""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError
from django.test import override_settings

from controlplane import aws, awsguard
from endpoints import secrets

EAST, WEST = "us-east-1", "us-west-2"
BOTH = [EAST, WEST]


def client(region: str):
    return aws.client("secretsmanager", region=region)


def value(region: str, arn: str, **kwargs) -> dict:
    """The secret as a process of ``region`` reads it (Ferry's AWS guard refuses a read of
    another region's copy, as the task roles do on AWS)."""
    with awsguard.acting_as(region):
        got = client(region).get_secret_value(SecretId=secrets.arn_in(arn, region), **kwargs)
    return json.loads(got["SecretString"])


@pytest.fixture
def stored(moto):
    """A secret created by a us-east-1 process, replicated to us-west-2."""
    with override_settings(FERRY_REGION=EAST, FERRY_SECRET_REPLICA_REGIONS=BOTH):
        return secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "one-Secret-1"})


def test_arns_move_between_regions_and_anything_else_is_refused():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ferry/t/endpoints/e-AbCdEf"
    assert (
        secrets.arn_in(arn, WEST) == "arn:aws:secretsmanager:us-west-2:123456789012:secret:ferry/t/endpoints/e-AbCdEf"
    )
    assert secrets.arn_region(arn) == EAST
    for bad in ("ferry/t/endpoints/e", "arn:aws:s3:::bucket", "arn:aws:secretsmanager:us-east-1:1:secret"):
        with pytest.raises(secrets.SecretsUnavailable):
            secrets.arn_in(bad, WEST)


def test_the_local_profile_replicates_to_every_simulated_region_but_its_own(settings):
    # tests/environment.py leaves FERRY_SECRET_REPLICA_REGIONS unset: the dev default applies.
    assert settings.FERRY_SECRET_REPLICA_REGIONS == settings.FERRY_REGIONS
    with override_settings(FERRY_REGION=WEST):
        assert secrets.replica_regions() == [EAST]


def test_the_primary_is_where_it_was_created_and_the_replica_has_the_same_arn_and_version(stored):
    assert secrets.arn_region(stored.arn) == EAST
    replica = client(WEST).describe_secret(SecretId=secrets.arn_in(stored.arn, WEST))
    assert replica["ARN"] == secrets.arn_in(stored.arn, WEST)
    assert replica["PrimaryRegion"] == EAST
    assert stored.version_id in replica["VersionIdsToStages"]


def test_each_region_reads_its_own_copy_and_never_another_regions(stored):
    for region in BOTH:
        with override_settings(FERRY_REGION=region):
            credentials, version = secrets.resolve(arn=stored.arn)
            assert (credentials, version) == ({"password": "one-Secret-1"}, stored.version_id)
    # A region without a copy fails, rather than reading across regions (which the worker's
    # IAM role would refuse on AWS).
    with override_settings(FERRY_REGION="eu-west-1"), pytest.raises(secrets.SecretsUnavailable, match="NotFound"):
        secrets.resolve(arn=stored.arn)


def test_rotation_from_the_replica_region_writes_at_the_primary_and_old_versions_stay_readable(stored):
    # The emulator refuses a write to a replica, as AWS does.
    with pytest.raises(ClientError, match="replica"):
        client(WEST).put_secret_value(SecretId=secrets.arn_in(stored.arn, WEST), SecretString="{}")
    with override_settings(FERRY_REGION=WEST):
        assert secrets.primary_region(stored.arn) == EAST
        rotated = secrets.rotate(arn=stored.arn, credentials={"password": "two-Secret-2"})
        assert secrets.arn_region(rotated.arn) == EAST
        # Read back in the replica's region: the new version is current, the old one is
        # still there by its id (a transfer that started with it finishes with it).
        assert secrets.resolve(arn=stored.arn) == ({"password": "two-Secret-2"}, rotated.version_id)
        old, _ = secrets.resolve(arn=stored.arn, version_id=stored.version_id)
        assert old == {"password": "one-Secret-1"}
    assert value(EAST, stored.arn) == {"password": "two-Secret-2"}


def test_a_secret_created_in_the_other_region_has_its_primary_there(moto):
    with override_settings(FERRY_REGION=WEST, FERRY_SECRET_REPLICA_REGIONS=BOTH):
        made = secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "w-Secret-3"})
    assert secrets.arn_region(made.arn) == WEST
    with override_settings(FERRY_REGION=EAST):
        assert secrets.primary_region(made.arn) == WEST
        secrets.rotate(arn=made.arn, credentials={"password": "w-Secret-4"})
        assert secrets.resolve(arn=made.arn)[0] == {"password": "w-Secret-4"}


def test_a_standalone_copy_here_takes_the_writes_even_though_the_stored_arn_names_another_region(moto):
    # What an operator's StopReplicationToReplica leaves when the primary's region is lost
    # for good: the replica, promoted, is a standalone secret with its old ARN. The emulator
    # has no StopReplicationToReplica, so a secret created standalone here stands in for it,
    # and the stored ARN names a region holding nothing.
    with override_settings(FERRY_REGION=WEST, FERRY_SECRET_REPLICA_REGIONS=[]):
        made = secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "dr-Secret-5"})
        stored_arn = secrets.arn_in(made.arn, EAST)
        assert secrets.primary_region(stored_arn) == WEST
        secrets.rotate(arn=stored_arn, credentials={"password": "dr-Secret-6"})
        assert secrets.resolve(arn=stored_arn)[0] == {"password": "dr-Secret-6"}
    # Without a copy here, the ARN's own region is taken for the primary.
    with override_settings(FERRY_REGION="eu-west-1"):
        assert secrets.primary_region(stored_arn) == EAST


@pytest.mark.parametrize("deleting_region", BOTH)
def test_deletion_removes_the_replicas_then_schedules_the_primarys_deletion(stored, deleting_region):
    # AWS (and the emulator) refuse to delete a primary that still has replicas.
    with pytest.raises(ClientError, match="replica"):
        client(EAST).delete_secret(SecretId=stored.arn, RecoveryWindowInDays=7)
    with override_settings(FERRY_REGION=deleting_region):
        secrets.schedule_deletion(arn=stored.arn)
        secrets.schedule_deletion(arn=stored.arn)  # again: already scheduled is fine
    assert client(EAST).describe_secret(SecretId=stored.arn).get("DeletedDate")  # recoverable for a week
    with pytest.raises(ClientError, match="ResourceNotFound"):
        client(WEST).describe_secret(SecretId=secrets.arn_in(stored.arn, WEST))


def test_a_rolled_back_creation_deletes_the_secret_and_its_replica_at_once(stored):
    secrets.delete_now(arn=stored.arn)
    for region in BOTH:
        with pytest.raises(ClientError, match="ResourceNotFound"):
            client(region).describe_secret(SecretId=secrets.arn_in(stored.arn, region))


@pytest.mark.django_db
def test_the_engine_reads_the_version_the_row_records(stored, make_tenant):
    from endpoints.models import Endpoint
    from endpoints.specs import to_spec

    tenant, _ = make_tenant()
    endpoint = Endpoint.objects.create(
        tenant=tenant,
        name=f"s3-{uuid.uuid4().hex[:8]}",
        kind=Endpoint.Kind.S3,
        config={"bucket": "ferry-bucket", "prefix": "", "region": EAST},
        secret_arn=stored.arn,
        secret_version=stored.version_id,
    )
    # A version written at the primary but not yet recorded on the row (a rotation in
    # flight, or not yet replicated here): the engine keeps to the row's version, so a pool
    # keyed on the endpoint's version never holds other credentials.
    client(EAST).put_secret_value(SecretId=stored.arn, SecretString=json.dumps({"access_key_id": "NEWER"}))
    with override_settings(FERRY_REGION=WEST):
        spec = to_spec(endpoint)
    assert spec.access_key_id is None  # the recorded version holds only a password
    assert value(WEST, stored.arn) == {"access_key_id": "NEWER"}
