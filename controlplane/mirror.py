"""The configuration mirror: a transactional outbox drained to the DynamoDB config table.

PostgreSQL is the system of record. Every change to mirrored configuration (tenants,
endpoints, later routes) writes a :class:`~controlplane.models.MirrorOutbox` row in the
same transaction as the change (:func:`record`). After the commit the row is copied to the
config table (:func:`drain`, run by ``transaction.on_commit`` and by a periodic sweep); a
crash between commit and copy only delays the copy until the next sweep.

One DynamoDB item per object, ``pk = "<kind>#<id>"``, carrying the object's ``version``.
Every write is conditional on the stored version being older, so drains may run
concurrently, repeat and arrive out of order: an older write never overwrites a newer one.
A deletion is a tombstone item (``deleted = true``) that keeps its version for the same
reason.

Kinds are registered by the apps that own them (:func:`register`): how to list the live
documents (for :func:`check`) and how to recreate an object from its document (for
:func:`restore`, the disaster-recovery path into an empty database).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.db import transaction
from django.utils import timezone

from controlplane import aws
from controlplane.models import MirrorOutbox, Tenant
from controlplane.querysets import in_pk_order
from controlplane.resources import tables

log = logging.getLogger(__name__)

DRAIN_BATCH = 500
KEEP_DRAINED = timedelta(days=7)


class MirrorError(Exception):
    """The mirror cannot do what was asked (e.g. restore into a database that has data)."""


@dataclass(frozen=True)
class MirroredKind:
    """How one kind of object is mirrored.

    ``documents`` yields ``(object_id, version, document)`` for every live object;
    ``restore`` recreates one object from its document (without writing outbox rows: the
    mirror already holds it); ``exists`` says whether the database has any such object.
    ``order`` sorts restores (tenants before the endpoints that point at them).
    """

    name: str
    order: int
    documents: Callable[[], Iterable[tuple[str, int, dict]]]
    restore: Callable[[dict], Any]
    exists: Callable[[], bool]


_kinds: dict[str, MirroredKind] = {}


def register(
    name: str,
    *,
    order: int,
    documents: Callable[[], Iterable[tuple[str, int, dict]]],
    restore: Callable[[dict], Any],
    exists: Callable[[], bool],
) -> None:
    """Register a mirrored kind (call from ``AppConfig.ready``; idempotent)."""
    if "#" in name:
        raise ValueError("kind names cannot contain '#'")
    _kinds[name] = MirroredKind(name=name, order=order, documents=documents, restore=restore, exists=exists)


def kinds() -> list[MirroredKind]:
    return sorted(_kinds.values(), key=lambda k: k.order)


def pk_of(kind: str, object_id: str) -> str:
    return f"{kind}#{object_id}"


def table_name() -> str:
    return tables()["config"]


# --- writing: the outbox --------------------------------------------------------------


def record(*, kind: str, object_id: str, version: int, document: dict | None) -> MirrorOutbox:
    """Queue ``document`` (``None``: deleted) for the mirror, in the caller's transaction.

    Must be called inside the ``transaction.atomic`` block that makes the change, so the
    outbox row commits or rolls back with it. The row is drained right after the commit.
    """
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        raise RuntimeError("mirror.record must run inside the transaction that makes the change")
    if document is not None:
        # Fail here, inside the transaction, rather than at drain time.
        json.dumps(document)
    row = MirrorOutbox.objects.create(kind=kind, object_id=str(object_id), version=version, document=document)
    transaction.on_commit(partial(_drain_after_commit, row.id))
    return row


def record_tenant(tenant: Tenant) -> MirrorOutbox:
    """Mirror a tenant (tenants are immutable once created: always version 1)."""
    return record(kind="tenant", object_id=str(tenant.id), version=1, document=tenant_document(tenant))


def _drain_after_commit(row_id: int) -> None:
    # The change is committed; a failure here must not fail the request that made it.
    # The row stays pending and the periodic sweep copies it.
    try:
        drain(ids=[row_id])
    except Exception:
        log.warning("mirror drain after commit failed; the sweep will retry", exc_info=True)


# --- draining -------------------------------------------------------------------------


@dataclass
class DrainResult:
    written: int = 0
    superseded: int = 0  # a newer version was already mirrored
    failed: int = 0

    @property
    def done(self) -> int:
        return self.written + self.superseded


def _item(row: MirrorOutbox) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": pk_of(row.kind, row.object_id)},
        "kind": {"S": row.kind},
        "object_id": {"S": row.object_id},
        "version": {"N": str(row.version)},
        "deleted": {"BOOL": row.document is None},
        "mirrored_at": {"S": timezone.now().isoformat()},
    }
    if row.document is not None:
        item["document"] = {"S": json.dumps(row.document, sort_keys=True, separators=(",", ":"))}
    return item


def _put(ddb: Any, row: MirrorOutbox, *, condition: str = "attribute_not_exists(pk) OR #v < :v") -> bool:
    """Write one row; False when the mirror already holds this version or a newer one."""
    kwargs: dict[str, Any] = {"TableName": table_name(), "Item": _item(row)}
    if condition:
        kwargs.update(
            ConditionExpression=condition,
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":v": {"N": str(row.version)}},
        )
    try:
        ddb.put_item(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def drain(*, ids: Iterable[int] | None = None, limit: int = DRAIN_BATCH) -> DrainResult:
    """Copy pending outbox rows (all, or just ``ids``) to the config table, oldest first.

    Safe to run concurrently and repeatedly: writes are version-conditional and a row is
    marked drained by compare-and-set. Stops at the first AWS error (the rest will fail the
    same way); the failed row keeps its error and is retried by the next drain.
    """
    result = DrainResult()
    rows = MirrorOutbox.objects.filter(drained_at__isnull=True).order_by("id")
    if ids is not None:
        rows = rows.filter(id__in=list(ids))
    ddb = aws.client("dynamodb")
    for row in rows[:limit]:
        try:
            written = _put(ddb, row)
        except (ClientError, BotoCoreError) as exc:
            result.failed += 1
            MirrorOutbox.objects.filter(id=row.id, drained_at__isnull=True).update(
                attempts=row.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:500]
            )
            log.warning("mirror write failed", extra={"outbox_id": row.id, "kind": row.kind, "error": str(exc)})
            break
        MirrorOutbox.objects.filter(id=row.id, drained_at__isnull=True).update(
            drained_at=timezone.now(), attempts=row.attempts + 1, last_error=""
        )
        if written:
            result.written += 1
        else:
            result.superseded += 1
    return result


def drain_all(*, max_batches: int = 100) -> DrainResult:
    """The periodic sweep: drain until nothing is pending or an error stops it."""
    total = DrainResult()
    for _ in range(max_batches):
        batch = drain()
        total.written += batch.written
        total.superseded += batch.superseded
        total.failed += batch.failed
        if batch.failed or batch.done < DRAIN_BATCH:
            break
    return total


def prune(*, older_than: timedelta = KEEP_DRAINED) -> int:
    """Delete rows drained more than ``older_than`` ago (kept a while for operators to read)."""
    deleted, _ = MirrorOutbox.objects.filter(drained_at__lt=timezone.now() - older_than).delete()
    return deleted


def pending() -> int:
    return MirrorOutbox.objects.filter(drained_at__isnull=True).count()


# --- reading the mirror ---------------------------------------------------------------


@dataclass(frozen=True)
class MirrorItem:
    pk: str
    kind: str
    object_id: str
    version: int
    deleted: bool
    document: dict | None


def _parse(raw: dict[str, Any]) -> MirrorItem | None:
    try:
        pk = raw["pk"]["S"]
        kind, _, object_id = pk.partition("#")
        version = int(raw.get("version", {}).get("N", "0"))
        deleted = bool(raw.get("deleted", {}).get("BOOL", False))
        text = raw.get("document", {}).get("S")
        document = json.loads(text) if text is not None else None
    except (KeyError, ValueError, TypeError):
        return None
    return MirrorItem(pk=pk, kind=kind, object_id=object_id, version=version, deleted=deleted, document=document)


def scan() -> Iterator[tuple[str, MirrorItem | None]]:
    """Every item of the config table as ``(pk, parsed item or None when unreadable)``."""
    ddb = aws.client("dynamodb")
    kwargs: dict[str, Any] = {"TableName": table_name(), "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for raw in page.get("Items", []):
            yield raw.get("pk", {}).get("S", "?"), _parse(raw)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- check ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    pk: str
    problem: str

    def __str__(self) -> str:
        return f"{self.pk}: {self.problem}"


@dataclass
class CheckReport:
    drift: list[Drift] = field(default_factory=list)
    checked: int = 0
    pending: int = 0


def check() -> CheckReport:
    """Compare the database with the mirror, object by object.

    Objects with an undrained outbox row are expected to differ for a moment and are not
    reported as drift (the number of pending rows is); everything else must match exactly:
    present, same version, same document, and no live mirror item without its row.
    """
    report = CheckReport(pending=pending())
    in_flight = {
        pk_of(kind, oid)
        for kind, oid in MirrorOutbox.objects.filter(drained_at__isnull=True).values_list("kind", "object_id")
    }
    mirrored: dict[str, MirrorItem | None] = {}
    for pk, item in scan():
        kind_name = pk.partition("#")[0]
        if kind_name in _kinds:
            mirrored[pk] = item
    expected: dict[str, tuple[int, dict]] = {}
    for kind in kinds():
        for object_id, version, document in kind.documents():
            expected[pk_of(kind.name, object_id)] = (version, document)
    for pk, (version, document) in sorted(expected.items()):
        report.checked += 1
        if pk in in_flight:
            continue
        item = mirrored.get(pk)
        if pk not in mirrored:
            report.drift.append(Drift(pk, "missing from the mirror"))
        elif item is None:
            report.drift.append(Drift(pk, "mirror item is unreadable"))
        elif item.deleted:
            report.drift.append(Drift(pk, f"mirror says deleted (version {item.version}) but the database has it"))
        elif item.version != version:
            report.drift.append(Drift(pk, f"version differs: database {version}, mirror {item.version}"))
        elif item.document != json.loads(json.dumps(document)):
            keys = sorted(
                k
                for k in set(document) | set(item.document or {})
                if (item.document or {}).get(k) != json.loads(json.dumps(document.get(k)))
            )
            report.drift.append(Drift(pk, f"document differs in: {', '.join(keys) or '?'}"))
    for pk, item in sorted(mirrored.items()):
        if pk in expected or pk in in_flight:
            continue
        if item is None:
            report.drift.append(Drift(pk, "mirror item is unreadable"))
        elif not item.deleted:
            report.drift.append(Drift(pk, "in the mirror but not in the database"))
    return report


# --- repair ---------------------------------------------------------------------------


def repair(report: CheckReport | None = None) -> list[Drift]:
    """Rewrite every drifted item from the database (the system of record); return what
    was rewritten.

    A missing item or a changed document at the same version is written under the
    condition ``version <= database version`` (a concurrent newer write wins). An item
    whose version is *higher* than the database's can only come from outside Ferry and is
    overwritten unconditionally. A live item with no database object becomes a tombstone
    one version above it.
    """
    report = report or check()
    if not report.drift:
        return []
    documents: dict[str, tuple[str, str, int, dict]] = {}
    for kind in kinds():
        for object_id, version, document in kind.documents():
            documents[pk_of(kind.name, object_id)] = (kind.name, object_id, version, document)
    mirrored = dict(scan())
    ddb = aws.client("dynamodb")
    repaired = []
    for drift in report.drift:
        item = mirrored.get(drift.pk)
        if drift.pk in documents:
            kind_name, object_id, version, document = documents[drift.pk]
            row = MirrorOutbox(kind=kind_name, object_id=object_id, version=version, document=document)
            # Unreadable, or a version Ferry never wrote: only an outside edit does that.
            newer_outside = drift.pk in mirrored and (item is None or item.version > version)
            condition = "" if newer_outside else "attribute_not_exists(pk) OR #v <= :v"
        else:
            kind_name, _, object_id = drift.pk.partition("#")
            version = (item.version if item else 0) + 1
            row = MirrorOutbox(kind=kind_name, object_id=object_id, version=version, document=None)
            condition = "attribute_not_exists(pk) OR #v < :v"
        if _put(ddb, row, condition=condition):
            repaired.append(drift)
    return repaired


# --- restore --------------------------------------------------------------------------


@dataclass
class RestoreResult:
    counts: dict[str, int] = field(default_factory=dict)
    tenants: list[Tenant] = field(default_factory=list)


def restore() -> RestoreResult:
    """Rebuild every mirrored kind into an empty database from the config table.

    Refuses (MirrorError) when the database already has any mirrored object: restore is
    the disaster-recovery path, not a merge. Tombstones are skipped. Runs in one
    transaction; API keys are not mirrored, the caller issues new ones for the tenants.
    """
    busy = [kind.name for kind in kinds() if kind.exists()]
    if busy:
        raise MirrorError(f"the database is not empty (has: {', '.join(busy)}); restore only fills an empty one")
    # Per kind name: (object id, document) of every live item.
    items: dict[str, list[tuple[str, dict]]] = {kind.name: [] for kind in kinds()}
    unreadable = []
    for pk, item in scan():
        if item is None:
            unreadable.append(pk)
        elif item.kind in items and not item.deleted and item.document is not None:
            items[item.kind].append((item.object_id, item.document))
    if unreadable:
        raise MirrorError(f"unreadable mirror items: {', '.join(sorted(unreadable))}")
    result = RestoreResult()
    with transaction.atomic():
        for kind in kinds():
            for _, document in sorted(items[kind.name], key=lambda i: i[0]):
                restored = kind.restore(document)
                if kind.name == "tenant":
                    result.tenants.append(restored)
            result.counts[kind.name] = len(items[kind.name])
    return result


# --- the tenant kind (controlplane's own) ---------------------------------------------


def tenant_document(tenant: Tenant) -> dict:
    return {"id": str(tenant.id), "name": tenant.name, "created_at": tenant.created_at.isoformat()}


def _tenant_documents() -> Iterator[tuple[str, int, dict]]:
    tenant: Tenant  # see in_pk_order: the model is not inferred from an untyped queryset
    for tenant in in_pk_order(Tenant.objects.all()):
        yield str(tenant.id), 1, tenant_document(tenant)


def _restore_tenant(document: dict) -> Tenant:
    tenant = Tenant.objects.create(id=document["id"], name=document["name"])
    # auto_now_add ignores a given value; keep the original creation time.
    Tenant.objects.filter(id=tenant.id).update(created_at=document["created_at"])
    tenant.refresh_from_db()
    return tenant


register(
    "tenant",
    order=10,
    documents=_tenant_documents,
    restore=_restore_tenant,
    exists=lambda: Tenant.objects.exists(),
)
