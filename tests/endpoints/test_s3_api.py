"""S3 endpoints through the API against the moto server."""

from __future__ import annotations

import pytest

from controlplane import aws
from endpoints import specs
from endpoints.models import Endpoint
from tests.endpoints.conftest import failed_check, patch, post, put, random_access_key, s3_body, secret_value

pytestmark = pytest.mark.django_db


def test_s3_create_read_change_rotate_test_delete(api, moto, bucket, secret_names):
    body = s3_body(bucket, sse="AES256")
    response = post(api, "/endpoints", body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["config"] == {
        "bucket": bucket,
        "prefix": "incoming/",
        "region": "us-east-1",
        "role_arn": None,
        "external_id": created["config"]["external_id"],  # issued by Ferry (test_external_id.py)
        "sse": "AES256",
        "kms_key_id": None,
        "expected_bucket_owner": None,
    }
    assert created["credentials"]["kinds"] == ["access_key_id", "secret_access_key"]
    assert body["credentials"]["secret_access_key"] not in response.content.decode()
    path = f"/endpoints/{created['id']}"
    assert api.get(f"/api/v1{path}").json() == created

    result = post(api, f"{path}/test", {}).json()
    assert result["ok"] is True, result
    assert [c["name"] for c in result["checks"]] == ["list_prefix", "write_probe"]
    listed = aws.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []  # the probe object was deleted

    changed = patch(api, path, {"config": {"prefix": "other/", "sse": "aws:kms", "kms_key_id": "alias/ferry"}})
    assert changed.status_code == 200, changed.content
    assert changed.json()["config"]["prefix"] == "other/"
    assert post(api, f"{path}/test", {}).json()["ok"] is True

    key_id, secret = random_access_key()
    rotated = put(api, f"{path}/credentials", {"access_key_id": key_id, "secret_access_key": secret})
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["credentials"]["version"] != created["credentials"]["version"]
    endpoint = Endpoint.objects.get(pk=created["id"])
    assert secret_value(endpoint.secret_arn) == {"access_key_id": key_id, "secret_access_key": secret}
    spec = specs.to_spec(endpoint)
    assert (spec.access_key_id, spec.secret_access_key, spec.bucket, spec.prefix) == (key_id, secret, bucket, "other/")

    assert api.delete(f"/api/v1{path}").status_code == 204
    assert f"ferry/{api.tenant.id}/endpoints/{created['id']}" not in secret_names()


def test_s3_with_role_and_no_credentials_assumes_the_role(api, moto, bucket, secret_names):
    before = secret_names()
    body = s3_body(
        bucket,
        credentials={},
        role_arn="arn:aws:iam::123456789012:role/ferry-access",
    )
    response = post(api, "/endpoints", body)
    assert response.status_code == 201, response.content
    assert response.json()["credentials"] == {"kinds": [], "version": None, "updated_at": None}
    assert secret_names() == before  # nothing to store
    result = post(api, f"/endpoints/{response.json()['id']}/test", {}).json()
    assert result["ok"] is True, result
    assert [c["name"] for c in result["checks"]] == ["assume_role", "list_prefix", "write_probe"]
    # Rotation on a role-only endpoint stores its first secret.
    key_id, secret = random_access_key()
    rotated = put(
        api, f"/endpoints/{response.json()['id']}/credentials", {"access_key_id": key_id, "secret_access_key": secret}
    )
    assert rotated.status_code == 200
    assert rotated.json()["credentials"]["kinds"] == ["access_key_id", "secret_access_key"]


def test_s3_missing_bucket_names_list_check(api, moto):
    endpoint_id = post(api, "/endpoints", s3_body("ferry-no-such-bucket-here")).json()["id"]
    check = failed_check(post(api, f"/endpoints/{endpoint_id}/test", {}).json())
    assert check["name"] == "list_prefix"
    assert "NoSuchBucket" in check["detail"]
