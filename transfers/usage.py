"""Answers the endpoints app's question before it deletes an endpoint: do routes or
transfers use it? Registered at start-up (``TransfersConfig.ready``) so the endpoints app
asks without importing this one (imports run one way: endpoints ← transfers)."""

from __future__ import annotations

from django.db.models import Q

from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from transfers.models import Route, Transfer
from transfers.states import MOVING


def endpoint_usage(endpoint: Endpoint) -> endpoint_services.Usage:
    """Whether a route names ``endpoint``, a transfer to or from it is still on its way,
    and whether any transfer names it at all (its history keeps the endpoint row)."""
    names = Q(source_endpoint=endpoint) | Q(destination_endpoint=endpoint)
    transfers = Transfer.objects.filter(names)
    return endpoint_services.Usage(
        routed=Route.objects.filter(names).exists(),
        moving=transfers.filter(state__in=MOVING).exists(),
        referenced=transfers.exists(),
    )


def register() -> None:
    endpoint_services.register_usage(endpoint_usage)
