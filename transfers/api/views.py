"""Routes and transfers API (tenant-scoped; another tenant's id is 404)."""

from __future__ import annotations

import uuid
from collections import Counter
from urllib.parse import urlencode

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import scoping, tenancy
from controlplane.errors import Conflict, FerryError, Unavailable, ValidationFailed
from controlplane.logs import bind
from controlplane.pagination import CursorPage, FirstPage
from controlplane.parsers import parse_time
from controlplane.schema import errors
from engine.errors import TransferError
from transfers import intake, manifests, naming, routes, selectors, services
from transfers.api import schema
from transfers.api import serializers as s
from transfers.models import Batch
from transfers.states import State


class SourceUnavailable(FerryError):
    status_code = 502
    code = "source_unavailable"


def _valid(serializer_class, request: Request, *, partial: bool = False):
    serializer = serializer_class(data=request.data, partial=partial, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return serializer


def _no_body(request: Request) -> None:
    _valid(s.EmptyIn, request)


# --- routes -------------------------------------------------------------------------------


class RouteListView(APIView):
    restricted_refused = ("post",)  # controlplane/scoping.py
    pagination_class = CursorPage

    @extend_schema(
        summary="List routes",
        description="The tenant's routes, newest first, a page at a time: follow `next` until it is null.",
        responses=schema.RouteSchema(many=True),
    )
    def get(self, request: Request) -> Response:
        found = scoping.narrow(request, selectors.route_list(tenant=tenancy.tenant_of(request)), route_fields=["pk"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(s.RouteOut(page, many=True).data)

    @extend_schema(
        summary="Create a route",
        description="Files matching `source.pattern` in the source endpoint's `source.path` are "
        "delivered to the destination endpoint's `destination.path`, named by `destination.name`. "
        "The trigger says when the source is listed: on a schedule (`cron`, in `timezone`), on "
        "S3 events, or only when run by hand. Both endpoints must be the tenant's.",
        request=s.RouteIn,
        responses={201: schema.RouteDetailSchema},
    )
    def post(self, request: Request) -> Response:
        spec = _valid(s.RouteIn, request).to_spec()
        route = routes.create_route(tenant=tenancy.tenant_of(request), **spec)
        return Response(s.RouteDetailOut(route).data, status=status.HTTP_201_CREATED)


class RouteDetailView(APIView):
    @extend_schema(
        summary="Show a route",
        description="The route with its options in force, its next scheduled run and, when it expects "
        "files (`options.expect`), whether they are late (`expectation`).",
        responses=schema.RouteDetailSchema,
    )
    def get(self, request: Request, route_id) -> Response:
        route = selectors.route_get(tenant=tenancy.tenant_of(request), route_id=route_id)
        return Response(s.RouteDetailOut(route).data)

    @extend_schema(
        summary="Change a route",
        description="Change any part of the route; parts and fields not given keep their values, and "
        "`options` are merged into the current ones. Transfers already created keep the options "
        "they were created with.",
        request=schema.RouteChange,
        responses={
            200: schema.RouteDetailSchema,
            **errors({409: "The route changed while this request was made; read it again and retry."}),
        },
    )
    def patch(self, request: Request, route_id) -> Response:
        route = selectors.route_get(tenant=tenancy.tenant_of(request), route_id=route_id)
        bind(route=str(route.id))
        spec = _valid(s.RouteIn, request, partial=True).to_spec()
        _within_restriction(request, spec)
        route = routes.update_route(route=route, expected_version=route.version, **spec)
        return Response(s.RouteDetailOut(route).data)

    @extend_schema(
        summary="Delete a route",
        description="Finished transfers of the route stay, without a route. Refused while transfers of "
        "the route are on their way.",
        responses={204: None, **errors({409: "Transfers of the route are on their way (`route_busy`)."})},
    )
    def delete(self, request: Request, route_id) -> Response:
        route = selectors.route_get(tenant=tenancy.tenant_of(request), route_id=route_id)
        bind(route=str(route.id))
        routes.delete_route(route=route)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouteRunView(APIView):
    @extend_schema(
        request=s.RunIn,
        summary="Run a route now",
        responses={
            200: inline_serializer(
                "RouteRunOut",
                {
                    "results": s.TransferOut(many=True),
                    "next": serializers.CharField(allow_null=True),
                    "waiting": s.WaitingOut(many=True),
                },
            ),
            **errors(
                {
                    409: "The route is disabled (`route_disabled`).",
                    502: "The source could not be listed (`source_<reason>`); the message says why.",
                    503: "Manual runs are not available on this server now.",
                }
            ),
        },
        description="List the route's source now and create transfers for its files. Stability "
        'rules apply unless {"force": true}. Returns the transfers this run created a page at a '
        "time: `results` is the first page (newest first, the transfers list's page size) and "
        "`next`, when the run created more, links to the transfers list filtered by the run's "
        "batch (`GET /transfers?batch=<id>`) with the cursor after that page: follow it until "
        "it is null. `waiting` counts the matching files the run did not take yet by the "
        "reason (a first manual run of a route with `stable_polls` only records the files it "
        "sees).",
    )
    def post(self, request: Request, route_id) -> Response:
        route = selectors.route_get(tenant=tenancy.tenant_of(request), route_id=route_id)
        bind(route=str(route.id))
        force = _valid(s.RunIn, request).validated_data["force"]
        if not route.enabled:
            raise Conflict("The route is disabled; enable it to run it.", code="route_disabled")
        # The listing is the execution side's: it registered the poller at start-up
        # (imports run one way, workers depends on transfers).
        try:
            waiting: Counter[str] = Counter()
            created = intake.poll_now(route, force=force, waiting=waiting)
        except NotImplementedError:
            raise Unavailable("Manual runs are not available yet.") from None
        except TransferError as exc:
            raise SourceUnavailable(f"The source could not be listed: {exc}", code=f"source_{exc.code}") from None
        # The run's transfers as the transfers list pages them (a big folder's run creates
        # thousands): the first page here, the rest through `next`.
        if created.batch_id is None:
            results, next_link = [], None
        else:
            found = selectors.transfer_list(tenant=tenancy.tenant_of(request), batch_id=created.batch_id)
            found = scoping.narrow(request, found, **selectors.TRANSFER_SCOPE_FIELDS)
            list_url = request.build_absolute_uri(f"{reverse('transfers')}?{urlencode({'batch': created.batch_id})}")
            paginator = FirstPage(list_url)
            page = paginator.paginate_queryset(found, request, view=self)
            results, next_link = s.TransferOut(page, many=True).data, paginator.get_next_link()
        return Response(
            {
                "results": results,
                "next": next_link,
                "waiting": [{"reason": reason, "files": n} for reason, n in sorted(waiting.items())],
            }
        )


# --- transfers ----------------------------------------------------------------------------


def _filters(request: Request) -> dict:
    params = request.query_params
    errors: dict[str, list[str]] = {}
    out: dict = {}
    if params.get("route"):
        try:
            out["route_id"] = uuid.UUID(params["route"])
        except ValueError:
            errors["route"] = ["Use a route id."]
    if params.get("batch"):
        try:
            out["batch_id"] = uuid.UUID(params["batch"])
        except ValueError:
            errors["batch"] = ["Use a batch id."]
    if params.get("state"):
        wanted = [v.strip() for v in params["state"].split(",") if v.strip()]
        bad = [v for v in wanted if v not in State.values]
        if bad:
            errors["state"] = [f"Unknown state(s) {', '.join(bad)}; use {', '.join(State.values)}."]
        out["states"] = wanted
    if params.get("since"):
        since = parse_time(params["since"])
        if since is None or since.tzinfo is None:
            errors["since"] = ["Use an ISO 8601 time with its offset, such as 2026-01-31T00:00:00Z."]
        out["since"] = since
    if params.get("path_prefix"):
        prefix = params["path_prefix"]
        if len(prefix) > 1024 or naming.CONTROL_CHARS.search(prefix):
            errors["path_prefix"] = ["A path prefix of at most 1024 characters, without control characters."]
        out["path_prefix"] = prefix
    if errors:
        raise ValidationFailed("The request is not valid.", fields=errors)
    return out


class TransferListView(APIView):
    restricted_refused = ("post",)  # controlplane/scoping.py
    pagination_class = CursorPage

    @extend_schema(
        summary="List transfers",
        description="The tenant's transfers, newest first, a page at a time: follow `next` until it is "
        "null. The filters combine.",
        parameters=[
            OpenApiParameter("route", str, description="Only this route's transfers."),
            OpenApiParameter("batch", str, description="Only this batch's transfers (one route run)."),
            OpenApiParameter("state", str, description="Comma-separated states."),
            OpenApiParameter("since", str, description="ISO 8601 time: created at or after it."),
            OpenApiParameter("path_prefix", str, description="Source paths starting with this."),
        ],
        responses=s.TransferOut(many=True),
    )
    def get(self, request: Request) -> Response:
        transfers = selectors.transfer_list(tenant=tenancy.tenant_of(request), **_filters(request))
        transfers = scoping.narrow(request, transfers, **selectors.TRANSFER_SCOPE_FIELDS)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(transfers, request, view=self)
        return paginator.get_paginated_response(s.TransferOut(page, many=True).data)

    @extend_schema(
        summary="Send one file",
        request=s.AdhocTransferIn,
        responses={
            201: s.TransferOut,
            200: s.TransferOut,
            **errors({409: "This Idempotency-Key was used with a different request (`idempotency_conflict`)."}),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description="Any unique string of the client's, such as a UUID; without it the answer is 400.",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                str,
                location=OpenApiParameter.HEADER,
                response=[200],
                required=True,
                enum=["true"],
                description="The transfer was created by an earlier request with this Idempotency-Key.",
            ),
        ],
        description="An ad-hoc transfer of one file between two of the tenant's endpoints, without a "
        "route. The same Idempotency-Key within 24 h returns the same transfer (200, with "
        "`Idempotent-Replayed: true`); with a different body it is refused (409).",
    )
    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            raise ValidationFailed(
                "An Idempotency-Key header is required.",
                code="idempotency_key_required",
                fields={"Idempotency-Key": ["This header is required."]},
            )
        data = _valid(s.AdhocTransferIn, request).validated_data
        transfer, created = intake.create_adhoc_transfer(
            tenancy.tenant_of(request),
            source_endpoint=data["source"]["endpoint"],
            source_path=data["source"]["path"],
            destination_endpoint=data["destination"]["endpoint"],
            destination_path=data["destination"]["path"],
            options=data.get("options"),
            idempotency_key=key,
            metadata=data.get("metadata"),
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(
            s.TransferOut(transfer).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers=headers,
        )


def _within_restriction(request: Request, spec: dict) -> None:
    """A restricted key may point its route only at endpoints it is restricted to (else the
    endpoint is not found, as in the path: controlplane/scoping.py)."""
    restriction = scoping.restriction_of(request)
    if restriction is None:
        return
    for side, field in (("source", "source_endpoint"), ("destination", "destination_endpoint")):
        if field in spec and not restriction.allows_endpoint(getattr(spec[field], "pk", spec[field])):
            raise ValidationFailed("The request is not valid.", fields={f"{side}.endpoint": ["No such endpoint."]})


def _detail(request: Request, transfer_id) -> Response:
    transfer = selectors.transfer_get(tenant=tenancy.tenant_of(request), transfer_id=transfer_id, timeline=True)
    return Response(s.TransferDetailOut(transfer).data)


class TransferDetailView(APIView):
    @extend_schema(
        summary="Show a transfer",
        description="The transfer with its progress, options and timeline (every change of state).",
        responses=schema.TransferDetailSchema,
    )
    def get(self, request: Request, transfer_id) -> Response:
        return _detail(request, transfer_id)


class TransferRedriveView(APIView):
    @extend_schema(
        summary="Re-drive a transfer",
        description="Send a failed or dead transfer round again with a fresh attempt budget; it resumes "
        "from its staged copy when it has one. Takes no body.",
        request=None,
        responses={
            200: schema.TransferDetailSchema,
            **errors(
                {409: "The transfer is not failed or dead (`invalid_state`), or one of its endpoints was deleted."}
            ),
        },
    )
    def post(self, request: Request, transfer_id) -> Response:
        transfer = selectors.transfer_get(tenant=tenancy.tenant_of(request), transfer_id=transfer_id)
        bind(transfer=str(transfer.id))
        _no_body(request)
        services.redrive(transfer, by=tenancy.caller_name(request))
        return _detail(request, transfer_id)


class TransferCancelView(APIView):
    @extend_schema(
        summary="Cancel a transfer",
        description="Cancel a transfer that has not finished. Takes no body.",
        request=None,
        responses={
            200: schema.TransferDetailSchema,
            **errors({409: "The transfer has finished and can no longer be cancelled (`invalid_state`)."}),
        },
    )
    def post(self, request: Request, transfer_id) -> Response:
        transfer = selectors.transfer_get(tenant=tenancy.tenant_of(request), transfer_id=transfer_id)
        bind(transfer=str(transfer.id))
        _no_body(request)
        services.cancel(transfer, by=tenancy.caller_name(request))
        return _detail(request, transfer_id)


# --- batches ------------------------------------------------------------------------------


class RouteBatchListView(APIView):
    pagination_class = CursorPage

    @extend_schema(
        summary="List a route's batches",
        description="Each run of the route that created transfers (a scheduled poll or a manual run) is a "
        "batch: newest first, a page at a time. A batch completes once, when its last transfer "
        "is terminal (docs/batches.md).",
        responses=s.BatchOut(many=True),
    )
    def get(self, request: Request, route_id) -> Response:
        found = selectors.batch_list(tenant=tenancy.tenant_of(request), route_id=route_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(s.BatchOut(page, many=True).data)


class BatchDetailView(APIView):
    @extend_schema(
        summary="Show a batch",
        description="A route run with its state, counts per terminal state, bytes and manifest file. "
        "Its transfers: `GET /transfers?batch=<id>`.",
        responses=s.BatchOut,
    )
    def get(self, request: Request, batch_id) -> Response:
        batch = selectors.batch_get(tenant=tenancy.tenant_of(request), batch_id=batch_id)
        return Response(s.BatchOut(batch).data)


MANIFEST_FILE = inline_serializer(
    "BatchManifestEntryOut",
    {
        "path": serializers.CharField(help_text="Where it was delivered (destination path)."),
        "source_path": serializers.CharField(),
        "size": serializers.IntegerField(),
        "sha256": serializers.CharField(),
    },
)


class BatchManifestView(APIView):
    @extend_schema(
        summary="Read a batch's manifest",
        description="The delivered files of a completed batch (paths, sizes, SHA-256), as frozen at "
        "completion: the document `batch.completed` events reference when the manifest is too large "
        "to travel inline; its SHA-256 is the event's `manifest.sha256`.",
        responses={
            200: inline_serializer(
                "BatchManifestOut",
                {
                    "batch": serializers.UUIDField(),
                    "route": serializers.UUIDField(allow_null=True),
                    "completed_at": serializers.DateTimeField(),
                    "count": serializers.IntegerField(),
                    "bytes": serializers.IntegerField(),
                    "files": serializers.ListField(child=MANIFEST_FILE),
                },
            ),
            **errors({409: "The batch is still open (`batch_open`)."}),
        },
    )
    def get(self, request: Request, batch_id) -> HttpResponse:
        batch = selectors.batch_get(tenant=tenancy.tenant_of(request), batch_id=batch_id, manifest=True)
        if batch.state != Batch.State.COMPLETED or batch.completed_at is None:
            raise Conflict("The batch is still open; its manifest is made when it completes.", code="batch_open")
        body = manifests.render(
            "json",
            batch_id=str(batch.id),
            route_id=str(batch.route_id) if batch.route_id else None,
            completed_at=batch.completed_at,
            files=batch.manifest,
        )
        # The exact bytes whose SHA-256 the event carries (not re-rendered by DRF).
        return HttpResponse(body, content_type="application/json")
