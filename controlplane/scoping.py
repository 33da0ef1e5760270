"""Keys and OAuth clients restricted to some endpoints and routes (docs/identity.md).

A key (or OAuth client) may carry ``endpoint_ids`` and/or ``route_ids``. Without either it
acts on its whole tenant, as before. With them it sees and acts on only:

- the endpoints listed,
- the routes listed,
- the transfers of a listed route, or from or to a listed endpoint;

anything else of its tenant is a 404, exactly like another tenant's id. A restricted key
creates nothing (endpoints, routes, ad-hoc transfers) and manages no identities (keys,
OAuth clients): views say so with ``restricted_refused`` (methods, or ``"*"``), and such a
request is a 403. Otherwise a restricted key could mint itself an unrestricted one.

Ids are not checked against the tenant's objects when a key is issued (controlplane knows
no endpoints or routes): an id that is not the tenant's simply matches nothing, since every
query stays tenant-scoped and the restriction only narrows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet
from rest_framework import exceptions
from rest_framework.request import Request

from controlplane.errors import NotFound
from controlplane.models import ApiKey, OAuthClient, Tenant
from controlplane.oauth import OAuthCaller


@dataclass(frozen=True)
class Restriction:
    endpoints: frozenset[str]
    routes: frozenset[str]

    def allows_endpoint(self, endpoint_id: Any) -> bool:
        return str(endpoint_id) in self.endpoints

    def allows_route(self, route_id: Any) -> bool:
        return str(route_id) in self.routes


def restriction_of(request: Request) -> Restriction | None:
    """The calling key's restriction, or None when it acts on its whole tenant."""
    auth = request.auth
    owner = auth.client if isinstance(auth, OAuthCaller) else auth
    if not isinstance(owner, ApiKey | OAuthClient):
        return None
    if owner.endpoint_ids is None and owner.route_ids is None:
        return None
    return Restriction(
        endpoints=frozenset(str(i) for i in owner.endpoint_ids or []),
        routes=frozenset(str(i) for i in owner.route_ids or []),
    )


def normalise(ids: Iterable[UUID] | None) -> list[str] | None:
    """Ids as stored (sorted strings, no repeats); None stays None (no restriction)."""
    return None if ids is None else sorted({str(i) for i in ids})


# Path parameters that name an object whose endpoints and routes only the app above knows
# (``transfer_id``): that app registers, at start-up, what tells whether a restriction
# allows the object (imports run one way).
_object_checks: dict[str, Callable[[Tenant, Any, Restriction], bool]] = {}


def register_object_check(parameter: str, check: Callable[[Tenant, Any, Restriction], bool]) -> None:
    """``check(tenant, value, restriction)``: True when the restriction allows the object."""
    _object_checks[parameter] = check


def enforce(request: Request, view: Any) -> None:
    """403 when a restricted key calls what only an unrestricted one may; 404 when the path
    names an endpoint, route or transfer outside the restriction."""
    restriction = restriction_of(request)
    if restriction is None:
        return
    refused = getattr(view, "restricted_refused", ())
    if refused == "*" or request.method.lower() in refused:
        raise exceptions.PermissionDenied(
            "This key is restricted to some endpoints and routes: it cannot create objects or manage keys."
        )
    kwargs = getattr(view, "kwargs", {}) or {}
    tenant = request.user.tenant
    for name, value in kwargs.items():
        if name == "endpoint_id":
            allowed = restriction.allows_endpoint(value)
        elif name == "route_id":
            allowed = restriction.allows_route(value)
        elif name in _object_checks:
            allowed = _object_checks[name](tenant, value, restriction)
        else:
            continue
        if not allowed:
            raise NotFound("Not found.")


def narrow(
    request: Request, queryset: QuerySet, *, endpoint_fields: Iterable[str] = (), route_fields: Iterable[str] = ()
) -> QuerySet:
    """``queryset`` less what the calling key's restriction hides: rows whose ``endpoint_fields``
    name a listed endpoint or whose ``route_fields`` name a listed route."""
    restriction = restriction_of(request)
    if restriction is None:
        return queryset
    return queryset.filter(visible_q(restriction, endpoint_fields=endpoint_fields, route_fields=route_fields))


def visible_q(restriction: Restriction, *, endpoint_fields: Iterable[str] = (), route_fields: Iterable[str] = ()) -> Q:
    """The filter :func:`narrow` applies (an impossible one when nothing can match)."""
    condition = Q(pk__in=[])
    for field in endpoint_fields:
        condition |= Q(**{f"{field}__in": sorted(restriction.endpoints)})
    for field in route_fields:
        condition |= Q(**{f"{field}__in": sorted(restriction.routes)})
    return condition
