"""Symbolic links out of an SFTP endpoint's root (issue #13 item 19), end to end: the API,
a keeper and a Celery worker, the real sshd and the moto server.

The endpoint's root is ``<data>/sym-*/root``; ``outside/`` beside it stands for ``/etc``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from controlplane import aws
from tests.transfers.test_flow import create, folder, route_body, s3_endpoint, sftp_endpoint, wait_state
from transfers.models import Transfer
from transfers.states import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SECRET = b"root:x:0:0:outside the endpoint's root\n"


@pytest.fixture
def layout(sshd) -> tuple[Path, Path]:
    base = folder(sshd, f"sym-{uuid.uuid4().hex[:6]}")
    root, outside = folder(sshd, f"{base.name}/root"), folder(sshd, f"{base.name}/outside")
    (outside / "passwd").write_bytes(SECRET)
    return root, outside


def adhoc(api, source: dict, path: str, destination: dict) -> dict:
    response = api.post(
        "/api/v1/transfers",
        {
            "source": {"endpoint": source["id"], "path": path},
            "destination": {"endpoint": destination["id"], "path": "/in/"},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert response.status_code == 201, response.content
    return response.json()


def objects(bucket: str) -> list[str]:
    return [obj["Key"] for obj in aws.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_an_adhoc_transfer_of_a_link_out_of_the_root_ends_dead_and_copies_nothing(api, sshd, bucket, stack, layout):
    root, outside = layout
    (root / "report.csv").symlink_to(outside / "passwd")
    source = sftp_endpoint(api, sshd, root=str(root))
    destination = s3_endpoint(api, bucket)
    transfer = adhoc(api, source, "/report.csv", destination)
    dead = wait_state(transfer["id"], State.DEAD, State.SUCCEEDED)
    assert dead.state == State.DEAD and dead.attempt == 1  # permanent: never retried
    assert dead.last_error_code == "path_outside_root"
    assert str(outside) not in dead.last_error_message
    assert objects(bucket) == []
    shown = api.get(f"/api/v1/transfers/{transfer['id']}").json()
    assert "path_outside_root" in str(shown)


def test_an_adhoc_transfer_of_a_link_inside_the_root_is_delivered(api, sshd, bucket, stack, layout):
    root, _ = layout
    (root / "real").mkdir()
    (root / "real" / "data.csv").write_bytes(b"inside the root")
    (root / "latest.csv").symlink_to(root / "real" / "data.csv")
    source = sftp_endpoint(api, sshd, root=str(root))
    destination = s3_endpoint(api, bucket)
    transfer = adhoc(api, source, "/latest.csv", destination)
    assert wait_state(transfer["id"], State.DEAD, State.SUCCEEDED).state == State.SUCCEEDED
    body = aws.client("s3").get_object(Bucket=bucket, Key="incoming/in/latest.csv")["Body"].read()
    assert body == b"inside the root"


def test_a_route_whose_folder_links_out_of_the_root_lists_nothing(api, sshd, bucket, stack, layout):
    root, outside = layout
    (root / "out").symlink_to(outside)
    source = sftp_endpoint(api, sshd, root=str(root))
    destination = s3_endpoint(api, bucket)
    route = create(api, "/api/v1/routes", route_body(source, "/out", destination, "/in"))
    response = api.post(f"/api/v1/routes/{route['id']}/run", {"force": True}, format="json")
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "source_path_outside_root"
    assert not Transfer.objects.filter(route_id=route["id"]).exists()
    assert objects(bucket) == []
