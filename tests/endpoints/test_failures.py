"""Failure paths: Secrets Manager or DynamoDB down, concurrent changes, read-only keys."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from controlplane import aws, mirror
from controlplane.errors import Conflict
from controlplane.models import MirrorOutbox
from deploy.local.services import free_port
from endpoints import services
from endpoints.models import Endpoint
from tests.endpoints.conftest import patch, post, s3_body, sftp_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def aws_down(moto):
    """Point every new AWS client at a closed loopback port for the test's body."""

    class Switch:
        def __enter__(self):
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
            aws.reset_clients()

        def __exit__(self, *exc):
            os.environ["AWS_ENDPOINT_URL"] = moto.url
            aws.reset_clients()

    yield Switch()
    os.environ["AWS_ENDPOINT_URL"] = moto.url
    aws.reset_clients()


def test_secrets_manager_down_is_503_and_nothing_is_written(api, sshd, aws_down):
    before = MirrorOutbox.objects.count()
    with aws_down:
        response = post(api, "/endpoints", sftp_body(sshd))
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "unavailable"
    assert not Endpoint.objects.exists()
    assert MirrorOutbox.objects.count() == before


def test_mirror_down_after_commit_leaves_the_row_for_the_sweep(api, aws_down, django_capture_on_commit_callbacks):
    body = s3_body("ferry-role-only", credentials={}, role_arn="arn:aws:iam::123456789012:role/r")
    with aws_down, django_capture_on_commit_callbacks(execute=True):
        response = post(api, "/endpoints", body)
    assert response.status_code == 201  # committed: the mirror's failure is not the request's
    row = MirrorOutbox.objects.get(kind="endpoint", object_id=response.json()["id"])
    assert row.drained_at is None
    assert row.attempts == 1 and row.last_error
    assert mirror.drain(ids=[row.id]).written == 1  # the sweep, once DynamoDB is back
    row.refresh_from_db()
    assert row.drained_at is not None and row.last_error == ""


def test_a_stale_update_is_refused_with_409(api, moto, bucket):
    created = post(api, "/endpoints", s3_body(bucket)).json()
    endpoint = Endpoint.objects.get(pk=created["id"])
    assert patch(api, f"/endpoints/{endpoint.id}", {"config": {"prefix": "a/"}}).status_code == 200
    with pytest.raises(Conflict):
        services.update_endpoint(endpoint=endpoint, expected_version=1, config={**endpoint.config, "prefix": "b/"})
    endpoint.refresh_from_db()
    assert endpoint.config["prefix"] == "a/"


def test_read_only_key_cannot_write(make_tenant, moto, sshd):
    _, key = make_tenant(scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/endpoints").status_code == 200
    response = post(client, "/endpoints", sftp_body(sshd))
    assert response.status_code == 403
    assert not Endpoint.objects.exists()
