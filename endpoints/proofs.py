"""Proof that an S3 endpoint can read an object, asked before Ferry acts on an S3 event.

An S3 event names a bucket and a key, not a tenant: any tenant can register any bucket
name. So before a transfer row exists for an event, the endpoint that would read the
object proves that its own credentials (or role) can: a ``HeadObject`` of that very key
through the engine's client for the endpoint, with ``ExpectedBucketOwner`` when the
endpoint names the bucket's owner (``config.expected_bucket_owner``). AWS then applies
the real rules: the bucket owner's policy, the role's trust policy and external id, the
identity's own policy, a key outside the prefix it may read. Matching accounts instead
would be too weak (two tenants can share an account) and too strict (cross-account
grants are legitimate).

No proof is cached: the ``HeadObject`` is per object (it is what proves read access to
that key), and the client it goes through is the engine's, cached per endpoint version,
so a change of bucket, role or credentials is proven afresh at the next event with
nothing to invalidate (docs/events.md, "Which tenant an event belongs to").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from endpoints.models import Endpoint
from endpoints.specs import to_spec
from engine import s3client
from engine.errors import TransferError, classify
from engine.spec import S3Spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadProof:
    """The answer for one endpoint and one object.

    ``ok``: the endpoint's credentials read the object's metadata. Otherwise ``reason`` is
    for operators (an AWS error code or Ferry's error kind, never a secret) and
    ``transient`` says whether asking again later may succeed (throttling, S3 or Secrets
    Manager unreachable) rather than being a refusal.
    """

    ok: bool
    reason: str = ""
    transient: bool = False


def _aws_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{exc.operation_name}: {error.get('Code') or status}"
    return type(exc).__name__


def prove_read(endpoint: Endpoint, *, bucket: str, key: str) -> ReadProof:
    """Whether ``endpoint``'s own credentials can read ``s3://bucket/key`` now.

    Never raises for an AWS answer: a refusal and a transient failure are both a
    :class:`ReadProof` that is not ``ok``.
    """
    try:
        spec = to_spec(endpoint)
    except TransferError as exc:  # the secret could not be read (transient) or similar
        return ReadProof(False, exc.code, transient=exc.transient)
    if not isinstance(spec, S3Spec):
        raise TypeError(f"only an S3 endpoint reads S3 objects, not {endpoint.kind}")
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    owner = (endpoint.config or {}).get("expected_bucket_owner")
    if owner:
        params["ExpectedBucketOwner"] = owner
    try:
        # Building the client assumes the endpoint's role (with its external id) when it
        # has one: a trust policy that refuses is a refusal like a 403 on the object.
        s3client.client(spec).head_object(**params)
    except (ClientError, BotoCoreError) as exc:
        return ReadProof(False, _aws_code(exc), transient=classify(exc).transient)
    return ReadProof(True)
