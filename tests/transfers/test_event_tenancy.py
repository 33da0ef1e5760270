"""S3 events belong to the endpoints that can read the object (issue 13, item 1).

Two tenants name the same bucket; the emulator holds several accounts and refuses, as AWS
does, a read from another account that the bucket policy does not grant, and a request
whose ``ExpectedBucketOwner`` is not the owner (deploy/local/moto_server.py).
"""

from __future__ import annotations

import logging
import uuid

import pytest

from endpoints import services as endpoint_services
from tests import accounts
from tests.endpoints.conftest import random_access_key
from tests.transfers.conftest import route_spec
from transfers import intake, routes
from transfers.models import Transfer

pytestmark = pytest.mark.django_db

A, B = "111111111111", "222222222222"
KEY = "in/payroll-2026-12.csv"


@pytest.fixture
def two_tenants(make_tenant):
    return make_tenant()[0], make_tenant()[0]


def s3_endpoint(tenant, bucket: str, credentials: dict | None, **config):
    values = {"bucket": bucket, "prefix": "in/", "region": "us-east-1", **config}
    return endpoint_services.create_endpoint(
        tenant=tenant, name=f"s3-{uuid.uuid4().hex[:8]}", kind="s3", config=values, credentials=credentials
    )


def event_route(tenant, source, make_endpoint):
    spec = route_spec(source, make_endpoint(tenant, "sftp"), trigger_type="event", cron="", source_path="/")
    return routes.create_route(tenant=tenant, **{**spec, "pattern": "*.csv"})


def event(bucket: str, version: str = "etag-1") -> dict:
    return {"bucket": bucket, "key": KEY, "version": version, "size": 8, "region": "us-east-1"}


def not_proven(caplog) -> dict[str, str]:
    """Endpoint id → reason, from the operator log lines of refused proofs."""
    return {
        r.endpoint: r.reason
        for r in caplog.records
        if r.getMessage() == "s3 event not proven: the endpoint cannot read the object"
    }


def test_an_event_for_a_bucket_two_tenants_name_creates_transfers_only_for_the_one_that_can_read_it(
    moto, two_tenants, make_endpoint, caplog
):
    tenant_a, tenant_b = two_tenants
    bucket = accounts.bucket_of(A, KEY)
    route_a = event_route(tenant_a, s3_endpoint(tenant_a, bucket, accounts.user_keys(A)), make_endpoint)
    # B names A's bucket with working keys of its own account, and with keys that work nowhere.
    b_own_account = s3_endpoint(tenant_b, bucket, accounts.user_keys(B))
    key_id, secret = random_access_key()
    b_made_up = s3_endpoint(tenant_b, bucket, {"access_key_id": key_id, "secret_access_key": secret})
    event_route(tenant_b, b_own_account, make_endpoint)
    event_route(tenant_b, b_made_up, make_endpoint)

    with caplog.at_level(logging.WARNING, logger="transfers.intake"):
        created = intake.create_from_s3_event(**event(bucket))

    assert [t.route_id for t in created] == [route_a.id]
    assert Transfer.objects.filter(tenant=tenant_b).count() == 0  # no key, size or ETag of A's in B's tenant
    refused = not_proven(caplog)
    assert set(refused) == {str(b_own_account.id), str(b_made_up.id)}
    assert all("403" in reason for reason in refused.values()), refused


def test_a_cross_account_grant_in_the_bucket_policy_lets_the_other_tenant_read_and_only_what_it_grants(
    moto, two_tenants, make_endpoint
):
    tenant_a, tenant_b = two_tenants
    bucket = accounts.bucket_of(A, KEY, "in/secret.csv")
    route_a = event_route(tenant_a, s3_endpoint(tenant_a, bucket, accounts.user_keys(A)), make_endpoint)
    route_b = event_route(tenant_b, s3_endpoint(tenant_b, bucket, accounts.user_keys(B)), make_endpoint)
    accounts.grant_read(A, bucket, B, prefix="in/payroll-")

    created = intake.create_from_s3_event(**event(bucket))
    assert sorted(str(t.route_id) for t in created) == sorted([str(route_a.id), str(route_b.id)])
    # The proof is of that key: the grant does not cover this one.
    other = intake.create_from_s3_event(**{**event(bucket), "key": "in/secret.csv"})
    assert [t.route_id for t in other] == [route_a.id]


def test_expected_bucket_owner_refuses_a_bucket_of_another_owner(moto, two_tenants, make_endpoint, caplog):
    tenant_a, tenant_b = two_tenants
    bucket = accounts.bucket_of(A, KEY)
    accounts.grant_read(A, bucket, B)
    right = event_route(
        tenant_a, s3_endpoint(tenant_a, bucket, accounts.user_keys(A), expected_bucket_owner=A), make_endpoint
    )
    # B may read A's bucket, but expects the bucket named so to be its own: not this one.
    wrong = s3_endpoint(tenant_b, bucket, accounts.user_keys(B), expected_bucket_owner=B)
    event_route(tenant_b, wrong, make_endpoint)

    with caplog.at_level(logging.WARNING, logger="transfers.intake"):
        created = intake.create_from_s3_event(**event(bucket))

    assert [t.route_id for t in created] == [right.id]
    assert set(not_proven(caplog)) == {str(wrong.id)}


def test_read_access_is_proven_again_at_every_event_after_the_credentials_change(moto, two_tenants, make_endpoint):
    _, tenant_b = two_tenants
    bucket = accounts.bucket_of(A, KEY)
    endpoint = s3_endpoint(tenant_b, bucket, accounts.user_keys(B))
    route = event_route(tenant_b, endpoint, make_endpoint)
    assert intake.create_from_s3_event(**event(bucket, "v1")) == []

    # B is given keys that can read the bucket (a user of A's account): the next event works.
    endpoint = endpoint_services.rotate_credentials(endpoint=endpoint, credentials=accounts.user_keys(A))
    assert [t.route_id for t in intake.create_from_s3_event(**event(bucket, "v2"))] == [route.id]

    # And taken away again: no earlier proof lets the next one through.
    endpoint_services.rotate_credentials(endpoint=endpoint, credentials=accounts.user_keys(B))
    assert intake.create_from_s3_event(**event(bucket, "v3")) == []
    assert list(Transfer.objects.filter(route=route).values_list("source_version", flat=True)) == ["v2"]


def test_a_proof_that_cannot_be_asked_now_makes_the_event_come_back_after_the_others_are_made(
    moto, two_tenants, make_endpoint, monkeypatch
):
    from endpoints import proofs

    tenant_a, tenant_b = two_tenants
    bucket = accounts.bucket_of(A, KEY)
    route_a = event_route(tenant_a, s3_endpoint(tenant_a, bucket, accounts.user_keys(A)), make_endpoint)
    unreachable = s3_endpoint(tenant_b, bucket, accounts.user_keys(B))
    event_route(tenant_b, unreachable, make_endpoint)
    real = proofs.prove_read

    def prove_read(endpoint, **kwargs):
        # As when Secrets Manager or S3 cannot be reached for this endpoint's proof.
        if endpoint.pk == unreachable.pk:
            return proofs.ReadProof(False, "secrets_unavailable", transient=True)
        return real(endpoint, **kwargs)

    monkeypatch.setattr(proofs, "prove_read", prove_read)
    with pytest.raises(intake.ProofUnavailable):
        intake.create_from_s3_event(**event(bucket))
    assert list(Transfer.objects.values_list("route_id", flat=True)) == [route_a.id]
