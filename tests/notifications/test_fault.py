"""At least once, never lost: transfers run by the real keeper and Celery worker emit their
events; the dispatcher runs as its own process (``manage.py run_notifier``) and is killed
with SIGKILL in the middle of a send. After a restart every event arrives, and the one
sent twice carries the same ``webhook-id`` both times."""

from __future__ import annotations

import signal
import sys
import threading
import uuid

import pytest
from standardwebhooks import Webhook

from deploy.local import services
from notifications.models import Event
from tests.conftest import ROOT, wait_until
from tests.transfers.test_flow import create, folder, route_body, run_route, s3_endpoint, sftp_endpoint, wait_state
from transfers.states import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

FILES = 4


def notifier(env: dict[str, str], log_path) -> services.Process:
    return services.spawn(
        [sys.executable, str(ROOT / "manage.py"), "run_notifier"], name="notifier", env=env, log_path=log_path
    )


def test_killing_the_dispatcher_mid_send_loses_nothing(api, sshd, bucket, stack, receiver, worker_env, logs_dir):
    src = folder(sshd, f"notify-{uuid.uuid4().hex[:6]}")
    for i in range(FILES):
        (src / f"f{i}.csv").write_bytes(f"file {i}\n".encode())
    made = create(
        api, "/api/v1/subscriptions", {"target": "webhook", "url": receiver.url, "event_types": ["transfer.succeeded"]}
    )
    route = create(
        api, "/api/v1/routes", route_body(sftp_endpoint(api, sshd), f"/{src.name}", s3_endpoint(api, bucket), "/in")
    )
    transfers = run_route(api, route["id"], force=True)
    assert len(transfers) == FILES
    for transfer in transfers:
        wait_state(transfer["id"], State.SUCCEEDED)
    expected = set(
        str(i)
        for i in Event.objects.filter(type="transfer.succeeded", route_id=route["id"]).values_list("id", flat=True)
    )
    assert len(expected) == FILES

    # The first request hangs until the dispatcher that sent it is dead; the rest are answered.
    first_seen, release = threading.Event(), threading.Event()

    def answer(request):
        if not first_seen.is_set():
            first_seen.set()
            release.wait(30)
            return 204, {}, 0.0
        return 204, {}, 0.0

    receiver.answer = answer
    env = {**worker_env, "FERRY_WEBHOOK_CA_BUNDLE": str(receiver.ca_path)}
    log_path = logs_dir / "notifier.log"
    victim = notifier(env, log_path)
    try:
        assert first_seen.wait(30), log_path.read_text()[-2000:]
        victim.signal(signal.SIGKILL)  # mid-send: the request is on the wire, unanswered
        victim.proc.wait(10)
        release.set()
        survivor = notifier(env, log_path)
        try:
            # Everything, and the interrupted send again once its claim expired.
            wait_until(
                lambda: (
                    {r.webhook_id for r in receiver.of_type("transfer.succeeded")} >= expected
                    and len(receiver.of_type("transfer.succeeded")) > FILES
                ),
                timeout=40,
                message="every transfer.succeeded event at the receiver, the interrupted one twice",
            )
        finally:
            survivor.stop()
    finally:
        release.set()
        victim.stop()
    got = receiver.of_type("transfer.succeeded")
    ids = [r.webhook_id for r in got]
    assert set(ids) == expected
    # The send the kill interrupted was sent again after its claim expired, with its id.
    assert ids.count(got[0].webhook_id) == 2 and len(ids) == FILES + 1
    for request in got:
        payload = Webhook(made["secret"]).verify(request.body, request.headers)
        assert payload["id"] == request.webhook_id and payload["route"] == route["id"]
