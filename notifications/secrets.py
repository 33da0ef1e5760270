"""Webhook signing secrets: made by Ferry, shown once, kept only in Secrets Manager.

One secret per webhook subscription, ``ferry/<tenant>/subscriptions/<id>``, stored, replicated
and read like endpoint credentials (endpoints/secrets.py). Its value is
``{"current": "whsec_…", "previous": "whsec_…" | null}``; during a rotation's overlap
(until the subscription's ``previous_secret_expires_at``) both sign every message, as the
Standard Webhooks specification allows (several space-separated signatures).
"""

from __future__ import annotations

import base64
import secrets as random_secrets
from typing import Any

from endpoints import secrets as store

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


def secret_name(tenant_id: Any, subscription_id: Any) -> str:
    return f"ferry/{tenant_id}/subscriptions/{subscription_id}"


def create(*, tenant_id: Any, subscription_id: Any, secret: str) -> str:
    """Store a new subscription's secret; returns its ARN."""
    stored = store.store_named(
        name=secret_name(tenant_id, subscription_id),
        values={"current": secret, "previous": None},
        description="Ferry webhook signing secret",
        tags={"ferry:tenant": str(tenant_id), "ferry:subscription": str(subscription_id)},
    )
    return stored.arn


def rotate(*, arn: str, secret: str) -> None:
    """Make ``secret`` current; the one it replaces becomes ``previous``."""
    value, _ = store.resolve(arn=arn)
    store.rotate(arn=arn, credentials={"current": secret, "previous": value.get("current")})


def signing_secrets(*, arn: str, with_previous: bool) -> list[str]:
    """The secrets that sign a message now: the current one, and the previous one during
    an overlap."""
    value, _ = store.resolve(arn=arn)
    found = [value.get("current")]
    if with_previous:
        found.append(value.get("previous"))
    return [s for s in found if isinstance(s, str) and s]


def schedule_deletion(*, arn: str) -> None:
    store.schedule_deletion(arn=arn)
