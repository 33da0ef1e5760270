"""Schema-only serializers and shapes for routes and transfers in the OpenAPI schema.

Never used on data: the options a route or transfer shows (complete, every option set),
and the body of ``PATCH /routes/{id}``, whose parts are each optional down to their fields
(the serializers validate it with ``partial``, which reaches the nested parts).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from transfers.api.serializers import (
    OPTIONS_SCHEMA,
    OptionsField,
    RouteDestinationIn,
    RouteDetailOut,
    RouteIn,
    RouteOut,
    RouteSourceIn,
    RouteTriggerIn,
    TransferDetailOut,
)

# What a route or transfer shows: every option, with the value in force.
OPTIONS_OUT: dict[str, Any] = {
    "type": "object",
    "description": "The options in force (docs/transfers.md): every option, defaults filled in.",
    "required": sorted(OPTIONS_SCHEMA["properties"]),
    "properties": OPTIONS_SCHEMA["properties"],
}


@extend_schema_field(OPTIONS_OUT)
class OptionsOutField(serializers.DictField):
    pass


class RouteSchema(RouteOut):
    options = OptionsOutField()

    class Meta:
        ref_name = "RouteOut"


class RouteDetailSchema(RouteDetailOut):
    options = OptionsOutField()

    class Meta:
        ref_name = "RouteDetailOut"


class TransferDetailSchema(TransferDetailOut):
    options = OptionsOutField()

    class Meta:
        ref_name = "TransferDetailOut"


class RouteSourceChange(RouteSourceIn):
    schema_partial = True


class RouteDestinationChange(RouteDestinationIn):
    schema_partial = True


class RouteTriggerChange(RouteTriggerIn):
    schema_partial = True


class RouteChange(RouteIn):
    schema_partial = True
    name = serializers.CharField(max_length=100, required=False)
    source = RouteSourceChange(required=False)
    destination = RouteDestinationChange(required=False)
    trigger = RouteTriggerChange(required=False)
    options = OptionsField(required=False, help_text="Merged into the route's current options.")
