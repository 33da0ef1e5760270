"""The circuit breaker of an endpoint: stop dialling a partner that keeps refusing us.

After ``FERRY_BREAKER_THRESHOLD`` consecutive connection-level failures (the endpoint could
not be reached, or refused the session: :data:`CONNECTION_CODES`) the breaker **opens**:
for ``FERRY_BREAKER_COOLDOWN`` seconds no worker dials the endpoint, and transfers that
would wait instead (``transfers.lifecycle.record_circuit_wait``). When the cool-down is
over, the next transfer that needs the endpoint wins the move to **half_open** and is the
one **probe**; others keep waiting. The probe's success **closes** the breaker (and the
waiting transfers are made due at once); its connection failure opens it again for another
cool-down. A probe whose worker died frees its turn when ``open_until`` (set to one more
cool-down when the probe started) passes.

The state lives on the Endpoint row in PostgreSQL, so every worker of both regions sees
the same breaker. Every write is one conditional UPDATE (compare-and-set, F() and Case
expressions), never a read-then-write and never ``SELECT … FOR UPDATE``: Aurora's write
forwarding carries plain DML from the other region (controlplane/dbforwarding.py).

The decisions are pure functions of a :class:`Breaker` snapshot and a clock
(:func:`decide`, :func:`after_failure`, :func:`after_success`), tested with a fake clock;
the UPDATEs below carry the same rules into SQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from django.conf import settings
from django.db.models import Case, F, Q, Value, When

from controlplane import metrics
from endpoints.models import Circuit, Endpoint

log = logging.getLogger(__name__)

# Error codes (engine/errors.py, engine/sftp_connect.py) that mean "the endpoint could not
# be reached or refused the session". Authentication, host keys, permissions and missing
# files are the customer's configuration, not an outage: they never count. Nor does a
# connection lost mid-copy (``connection_lost``): the endpoint was reachable.
CONNECTION_CODES: frozenset[str] = frozenset(
    {"connection_refused", "connection_failed", "timeout", "network", "channel_refused"}
)

# The code and reason a waiting transfer shows (docs/transfers.md).
WAIT_CODE = "endpoint_circuit_open"

# Registered at start-up by the transfers app (TransfersConfig.ready): endpoints do not
# import transfers. Called with an endpoint whose breaker this process closed, so the
# transfers waiting for it go now rather than at the end of their wait.
_on_closed: Callable[[uuid.UUID], object] | None = None


def register_on_closed(hook: Callable[[uuid.UUID], object]) -> None:
    """Register what lets the transfers waiting for an endpoint go once its breaker closes."""
    global _on_closed
    _on_closed = hook


def closed(endpoint_id: uuid.UUID) -> None:
    """This process closed the endpoint's breaker: tell the registered hook (if any)."""
    if _on_closed is not None:
        _on_closed(endpoint_id)


def counts(code: str) -> bool:
    """Whether a failure with this code counts towards opening the breaker."""
    return code in CONNECTION_CODES


@dataclass(frozen=True)
class Breaker:
    """A snapshot of one endpoint's breaker."""

    endpoint_id: uuid.UUID
    name: str
    state: Circuit
    consecutive_failures: int
    open_until: datetime | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> Breaker:
        return cls(
            endpoint_id=endpoint.id,
            name=endpoint.name,
            state=Circuit(endpoint.circuit_state),
            consecutive_failures=endpoint.consecutive_failures,
            open_until=endpoint.circuit_open_until,
        )


class Verdict(Enum):
    DIAL = "dial"  # closed: go ahead
    PROBE = "probe"  # the cool-down (or a dead probe's turn) is over: try to be the probe
    WAIT = "wait"  # open, or another worker's probe is under way: wait until ``open_until``


def decide(breaker: Breaker, *, now: datetime) -> Verdict:
    """What a worker about to dial the endpoint may do (pure)."""
    if breaker.state == Circuit.CLOSED:
        return Verdict.DIAL
    if breaker.open_until is None or breaker.open_until <= now:
        return Verdict.PROBE
    return Verdict.WAIT


def after_failure(breaker: Breaker, *, now: datetime, threshold: int, cooldown: float) -> Breaker:
    """The breaker after one more connection failure (pure; :func:`record_failure` is its
    UPDATE): a probe's failure, or the threshold reached while closed, opens it."""
    failures = breaker.consecutive_failures + 1
    if breaker.state == Circuit.HALF_OPEN or (breaker.state == Circuit.CLOSED and failures >= threshold):
        return replace(
            breaker, state=Circuit.OPEN, consecutive_failures=failures, open_until=now + timedelta(seconds=cooldown)
        )
    return replace(breaker, consecutive_failures=failures)


def after_success(breaker: Breaker) -> Breaker:
    """The breaker after a connection that worked (pure): closed, the count back to 0."""
    return replace(breaker, state=Circuit.CLOSED, consecutive_failures=0, open_until=None)


# --- the database side ----------------------------------------------------------------------


def _cooldown() -> timedelta:
    return timedelta(seconds=settings.FERRY_BREAKER_COOLDOWN)


def snapshot(endpoint_ids: Iterable[uuid.UUID]) -> list[Breaker]:
    """Fresh snapshots of these endpoints' breakers (deleted endpoints included)."""
    rows = Endpoint.all_objects.filter(id__in=set(endpoint_ids)).only(
        "id", "name", "circuit_state", "consecutive_failures", "circuit_open_until"
    )
    return [Breaker.of(row) for row in rows]


@dataclass(frozen=True)
class Gate:
    """May a transfer dial its endpoints? ``blocked_by`` names the endpoint it waits for,
    ``until`` how long; ``probing`` lists the endpoints whose probe this transfer is."""

    blocked_by: Breaker | None = None
    until: datetime | None = None
    probing: tuple[uuid.UUID, ...] = ()
    # Endpoints whose breaker has something to reset on success (not closed, or failures
    # counted): a success writes only these, so a healthy endpoint costs no UPDATE.
    unsettled: tuple[uuid.UUID, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.blocked_by is None


def gate(breakers: Iterable[Breaker], *, now: datetime) -> Gate:
    """Ask every breaker before dialling (``breakers``: the endpoints' rows as the caller
    just loaded them, :meth:`Breaker.of`, or :func:`snapshot`; a stale one only makes the
    probe's compare-and-set miss). Any that says wait makes the transfer wait (no
    probe turn is taken then, so a wait on one endpoint never wastes another's probe);
    otherwise the transfer takes the probe turn of each breaker whose cool-down is over,
    by compare-and-set (open|half_open with that ``open_until`` → half_open until now +
    cool-down): one worker wins, the others wait for its outcome."""
    breakers = list(breakers)
    waiting = [b for b in breakers if decide(b, now=now) == Verdict.WAIT]
    if waiting:
        longest = max(waiting, key=lambda b: b.open_until or now)
        return Gate(blocked_by=longest, until=longest.open_until)
    probing: list[uuid.UUID] = []
    unsettled = tuple(b.endpoint_id for b in breakers if b.state != Circuit.CLOSED or b.consecutive_failures)
    for breaker in breakers:
        if decide(breaker, now=now) != Verdict.PROBE:
            continue
        won = Endpoint.all_objects.filter(
            id=breaker.endpoint_id, circuit_state=breaker.state, circuit_open_until=breaker.open_until
        ).update(circuit_state=Circuit.HALF_OPEN, circuit_open_until=now + _cooldown())
        if won != 1:
            # Another worker is the probe: wait for its turn to end (or for its success,
            # which makes the waiting transfers due at once).
            return Gate(blocked_by=breaker, until=now + _cooldown(), probing=tuple(probing))
        log.info("circuit breaker half-open: this transfer is the probe", extra={"endpoint": str(breaker.endpoint_id)})
        probing.append(breaker.endpoint_id)
    return Gate(probing=tuple(probing), unsettled=unsettled)


def record_failure(endpoint_id: uuid.UUID, *, now: datetime) -> bool:
    """Count one connection failure of the endpoint, in one UPDATE (:func:`after_failure`).
    True when this failure opened the breaker."""
    threshold = settings.FERRY_BREAKER_THRESHOLD
    opens = Q(circuit_state=Circuit.HALF_OPEN) | Q(
        circuit_state=Circuit.CLOSED, consecutive_failures__gte=threshold - 1
    )
    Endpoint.all_objects.filter(id=endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1,
        circuit_state=Case(When(opens, then=Value(Circuit.OPEN.value)), default=F("circuit_state")),
        circuit_opened_at=Case(When(opens, then=Value(now)), default=F("circuit_opened_at")),
        circuit_open_until=Case(When(opens, then=Value(now + _cooldown())), default=F("circuit_open_until")),
    )
    opened = Endpoint.all_objects.filter(id=endpoint_id, circuit_state=Circuit.OPEN, circuit_opened_at=now).exists()
    if opened:
        log.warning(
            "circuit breaker opened: the endpoint is not dialled until the cool-down ends",
            extra={"endpoint": str(endpoint_id), "cooldown": settings.FERRY_BREAKER_COOLDOWN},
        )
    return opened


def record_success(endpoint_id: uuid.UUID) -> bool:
    """A connection to the endpoint worked: close its breaker and reset the count. True
    when this closed an open or half-open breaker; the waiting transfers are then let go
    (:func:`closed`). A breaker already closed with no failures is not written."""
    updated = Endpoint.all_objects.filter(id=endpoint_id, circuit_state__in=[Circuit.OPEN, Circuit.HALF_OPEN]).update(
        circuit_state=Circuit.CLOSED, consecutive_failures=0, circuit_open_until=None
    )
    if updated:
        log.info("circuit breaker closed: the endpoint answered", extra={"endpoint": str(endpoint_id)})
        closed(endpoint_id)
        return True
    Endpoint.all_objects.filter(id=endpoint_id, circuit_state=Circuit.CLOSED, consecutive_failures__gt=0).update(
        consecutive_failures=0
    )
    return False


def reset_fields() -> dict[str, object]:
    """The fields that close a breaker: set by an endpoint's config change (the customer
    changed where or how Ferry dials, so the old failures say nothing about the new one)."""
    return {"circuit_state": Circuit.CLOSED, "consecutive_failures": 0, "circuit_open_until": None}


def open_count() -> int:
    """Breakers not closed (open, or half-open with a probe under way), all tenants: the
    partial index ``endpoint_circuit_not_closed`` keeps this a read of the few that are."""
    return Endpoint.all_objects.exclude(circuit_state=Circuit.CLOSED).count()


def sample_metrics() -> int:
    """Set ``ferry_endpoint_circuit_open`` (registered as a ``/metrics`` sampler)."""
    count = open_count()
    metrics.endpoint_circuit_open.set(count)
    return count
