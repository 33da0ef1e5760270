"""The tamper-evident audit log of configuration changes (docs/audit.md).

One call records a change, inside the transaction of the change itself::

    audit.record(action="endpoint.update", obj=endpoint, tenant_id=endpoint.tenant_id,
                 before=before_doc, after=document_of(endpoint))

Who acted, from where and under which request id come from the context, not from the
caller: the API request (its API key's prefix, or an OAuth client's id), the admin's
operator, or a management command (:func:`acting`). ``before`` and ``after`` are masked
(:func:`masked`) before they are stored or hashed: a secret never reaches the log.

The entries form one hash chain: ``hash = sha256(previous_hash + canonical JSON)``
(:func:`canonical`). Both regions write, so every write takes the one chain-head row with
``SELECT … FOR UPDATE`` (write forwarding refuses ``LOCK TABLE`` and savepoints; a row lock
passes) and the entry's ``seq`` is the head's plus one. :func:`verify` walks the chain.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from controlplane import logs
from controlplane.clientip import client_address
from controlplane.correlation import current_request_id
from controlplane.models import ApiKey, AuditChainHead, AuditEntry

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who made a change. ``kind``: ``api_key`` (name: the key's prefix), ``oauth_client``
    (the client id), ``operator`` (the admin username), ``command`` (the manage.py command)
    or ``system``."""

    kind: str
    name: str
    source_address: str | None = None


SYSTEM = Actor(kind="system", name="ferry")

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("ferry_audit_request", default=None)
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("ferry_audit_actor", default=None)


# --- who ----------------------------------------------------------------------------------


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Record the changes made inside the block as ``actor``'s (management commands)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def command(name: str) -> contextlib.AbstractContextManager[None]:
    """``with audit.command("regions drain"):`` around a management command's change."""
    return acting(Actor(kind="command", name=name))


class AuditContextMiddleware:
    """Keep the request at hand for :func:`current_actor` (after the auth middleware).

    The actor is read from the request only when a change is recorded: DRF authenticates
    inside the view, and sets ``request.auth`` / ``request.user`` on the Django request.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def actor_of(request: HttpRequest) -> Actor:
    """The identity a request acts with: its API key or OAuth client, else its operator."""
    source = client_address(request)
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return Actor(kind="api_key", name=auth.prefix, source_address=source)
    # Another credential (an OAuth2 access token) says who it is by an ``audit_actor``
    # attribute "<kind>:<name>", e.g. "oauth_client:<client id>".
    described = getattr(auth, "audit_actor", None)
    if isinstance(described, str) and ":" in described:
        kind, _, name = described.partition(":")
        return Actor(kind=kind, name=name, source_address=source)
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) and hasattr(user, "get_username"):
        return Actor(kind="operator", name=user.get_username(), source_address=source)
    return Actor(kind="anonymous", name="", source_address=source)


def current_actor() -> Actor:
    """Who is acting now: an explicit :func:`acting` block, else the request, else system."""
    explicit = _actor.get()
    if explicit is not None:
        return explicit
    request = _request.get()
    if request is not None:
        return actor_of(request)
    return SYSTEM


# --- what ---------------------------------------------------------------------------------


def masked(value: Any) -> Any:
    """``value`` as JSON, with secret-looking keys and known secrets replaced by
    ``[redacted]``: the log lines' redaction (``controlplane.logs.scrub``), reused."""
    return json.loads(json.dumps(logs.scrub(value), default=str))


def canonical(entry: Mapping[str, Any]) -> str:
    """The entry's canonical JSON: sorted keys, no spaces, UTF-8 text, times in ISO 8601."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hashed_fields(entry: AuditEntry) -> dict[str, Any]:
    """What the hash covers: every field of the entry but the hashes themselves."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "tenant_id": str(entry.tenant_id) if entry.tenant_id else None,
        "actor_kind": entry.actor_kind,
        "actor": entry.actor,
        "action": entry.action,
        "object_kind": entry.object_kind,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
        "source_address": entry.source_address,
        "request_id": entry.request_id,
        "region": entry.region,
    }


def chain_hash(previous_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((previous_hash + canonical(hashed_fields(entry))).encode()).hexdigest()


def _locked_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        # The first entry ever (or after a test's flush) creates the head. ON CONFLICT DO
        # NOTHING (no savepoint, unlike get_or_create) lets two first writers both go on; the
        # second then waits on the first's row lock.
        AuditChainHead.objects.bulk_create([AuditChainHead(id=1, seq=0, hash=GENESIS)], ignore_conflicts=True)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def record(
    *,
    action: str,
    object_kind: str,
    object_id: object = "",
    tenant_id: object = None,
    before: Any = None,
    after: Any = None,
    actor: Actor | None = None,
) -> AuditEntry:
    """Append one entry to the audit log, in the caller's transaction (or its own).

    ``action`` is ``<kind>.<verb>`` (``endpoint.update``); ``before``/``after`` are JSON-able
    documents of the object (masked here). The actor, source address and request id come
    from the context (:func:`current_actor`) unless ``actor`` is given. Holds the chain
    head's row lock until the caller's transaction ends: keep network calls out of it.
    """
    who = actor or current_actor()
    # savepoint=False: joins the caller's transaction as it is (write forwarding refuses
    # savepoints); alone, it is a transaction of its own.
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        entry = AuditEntry(
            seq=head.seq + 1,
            at=timezone.now(),
            tenant_id=tenant_id,
            actor_kind=who.kind,
            actor=who.name[:200],
            action=action,
            object_kind=object_kind,
            object_id=str(object_id or ""),
            before=masked(before),
            after=masked(after),
            source_address=who.source_address or "",
            request_id=current_request_id(),
            region=settings.FERRY_REGION,
            previous_hash=head.hash or GENESIS,
        )
        if entry.tenant_id is not None and not isinstance(entry.tenant_id, str):
            entry.tenant_id = str(entry.tenant_id)
        entry.hash = chain_hash(entry.previous_hash, entry)
        entry.save()
        AuditChainHead.objects.filter(pk=1).update(seq=entry.seq, hash=entry.hash)
    return entry


# --- verify -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """Where the chain breaks: the ``seq`` of the first bad entry (or the head) and why."""

    seq: int
    reason: str


def verify(*, page: int = 1000) -> tuple[int, Broken | None]:
    """Walk the chain from the first entry; return how many entries were checked and the
    first break (None when whole).

    Detects an edited entry (its hash no longer matches its content), a deleted one (a gap
    in ``seq`` or a ``previous_hash`` that is not the prior entry's hash) and a deleted tail
    (the head names a later entry than the last one). Keyset pages, no server-side cursor.
    """
    previous_hash = GENESIS
    expected = 1
    checked = 0
    while True:
        batch = list(AuditEntry.objects.filter(seq__gte=expected).order_by("seq")[:page])
        for entry in batch:
            if entry.seq != expected:
                return checked, Broken(expected, f"entry {expected} is missing (the next one is {entry.seq})")
            if entry.previous_hash != previous_hash:
                return checked, Broken(entry.seq, "its previous_hash is not the hash of the entry before it")
            if chain_hash(previous_hash, entry) != entry.hash:
                return checked, Broken(entry.seq, "its content does not match its hash (edited)")
            previous_hash = entry.hash
            expected += 1
            checked += 1
        if len(batch) < page:
            break
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.seq > checked:
        return checked, Broken(
            checked + 1, f"entries {checked + 1} to {head.seq} are missing (the head names {head.seq})"
        )
    if head is not None and head.seq and head.hash != previous_hash:
        return checked, Broken(head.seq, "the chain head's hash is not the last entry's")
    return checked, None
