"""Control-plane tasks (the control queue of each region)."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime

from django.conf import settings

from controlplane import mirror
from controlplane.celery import app
from controlplane.models import WorkerPing

log = logging.getLogger(__name__)


@app.task(name="controlplane.tasks.ping")
def ping(nonce: str, sent_at: str) -> None:
    """Record that a worker of this region received ``nonce`` (idempotent on the nonce)."""
    WorkerPing.objects.get_or_create(
        nonce=nonce,
        defaults={
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "region": settings.FERRY_REGION,
            "sent_at": datetime.fromisoformat(sent_at),
        },
    )
    # One line per ping: it shows which worker took it and under which request id.
    log.info("ping received", extra={"nonce": nonce})


@app.task(name="controlplane.tasks.mirror_drain")
def mirror_drain() -> dict:
    """The periodic sweep of the config outbox (after-commit drains catch almost everything)."""
    result = mirror.drain_all()
    pruned = mirror.prune()
    return {"written": result.written, "superseded": result.superseded, "failed": result.failed, "pruned": pruned}


@app.task(name="controlplane.tasks.oauth_clear_expired")
def oauth_clear_expired() -> None:
    """Delete expired OAuth access tokens (and grants), as django-oauth-toolkit's
    ``cleartokens`` command does: an expired token is refused anyway, this keeps the table
    small. Hourly, from beat."""
    from oauth2_provider.models import clear_expired  # needs the settings: import at run time

    clear_expired()
