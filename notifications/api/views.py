"""Subscriptions API (tenant-scoped; another tenant's id is 404)."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import tenancy
from controlplane.errors import Conflict, ValidationFailed
from controlplane.logs import bind
from controlplane.pagination import CursorPage
from controlplane.schema import errors
from notifications import selectors, services
from notifications.api import serializers as s


def _valid(serializer_class, request: Request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _with_secret(made: services.WithSecret) -> dict:
    data = s.SubscriptionOut(made.subscription).data
    data["secret"] = made.secret  # shown once, never again
    return data


class SubscriptionListView(APIView):
    pagination_class = CursorPage

    @extend_schema(
        summary="List subscriptions",
        description="The tenant's notification subscriptions, newest first, a page at a time.",
        responses=s.SubscriptionOut(many=True),
    )
    def get(self, request: Request) -> Response:
        found = selectors.subscription_list(tenant=tenancy.tenant_of(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(s.SubscriptionOut(page, many=True).data)

    @extend_schema(
        summary="Subscribe to events",
        description="Deliver the tenant's events (docs/notifications.md) to an HTTPS webhook, signed per the "
        "Standard Webhooks specification, or to your EventBridge bus. A webhook's signing secret is made by "
        "Ferry and shown in this answer only. Ferry's own event bus of each region receives every event "
        "whatever the subscriptions.",
        request=s.SubscriptionIn,
        responses={201: s.SubscriptionWithSecret, **errors({503: "Secrets Manager is not available; try again."})},
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.SubscriptionIn, request)
        made = services.create_subscription(tenant=tenancy.tenant_of(request), **data)
        return Response(_with_secret(made), status=status.HTTP_201_CREATED)


class SubscriptionDetailView(APIView):
    @extend_schema(
        summary="Show a subscription", description="The subscription and its state.", responses=s.SubscriptionOut
    )
    def get(self, request: Request, subscription_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        return Response(s.SubscriptionOut(sub).data)

    @extend_schema(
        summary="Change a subscription",
        description="Change the URL (webhooks), the bus (eventbridge), the event types or the description, or "
        "set `enabled`: `true` enables a subscription Ferry disabled after failures, and its waiting "
        "deliveries are sent.",
        request=s.SubscriptionChange,
        responses=s.SubscriptionOut,
    )
    def patch(self, request: Request, subscription_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        bind(subscription=str(sub.id))
        data = _valid(s.SubscriptionChange, request)
        if "url" in data and sub.target != "webhook":
            raise ValidationFailed(
                "The request is not valid.", fields={"url": ["Only a webhook subscription has one."]}
            )
        if "event_bus_arn" in data and sub.target != "eventbridge":
            raise ValidationFailed(
                "The request is not valid.", fields={"event_bus_arn": ["Only an eventbridge subscription has one."]}
            )
        return Response(s.SubscriptionOut(services.update_subscription(subscription=sub, **data)).data)

    @extend_schema(
        summary="Delete a subscription",
        description="No more deliveries; its delivery log goes too. The signing secret is scheduled for deletion.",
        responses={204: None},
    )
    def delete(self, request: Request, subscription_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        services.delete_subscription(subscription=sub)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecretView(APIView):
    @extend_schema(
        summary="Rotate a webhook's signing secret",
        description="A new secret, shown in this answer only. For `overlap_hours` (24 unless given) every "
        "message carries two signatures, by the old and the new secret, so receivers can switch without a "
        "gap.",
        request=s.RotateSecretIn,
        responses={
            200: s.SubscriptionWithSecret,
            **errors({409: "Not a webhook subscription.", 503: "Secrets Manager is not available; try again."}),
        },
    )
    def post(self, request: Request, subscription_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        overlap = timedelta(hours=_valid(s.RotateSecretIn, request)["overlap_hours"])
        return Response(_with_secret(services.rotate_secret(subscription=sub, overlap=overlap)))


class DeliveryListView(APIView):
    pagination_class = CursorPage

    @extend_schema(
        summary="List a subscription's deliveries",
        description="The delivery log: one entry per event sent to this subscription, newest first, with "
        "every attempt (status code, latency, error).",
        responses=s.DeliveryOut(many=True),
    )
    def get(self, request: Request, subscription_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.delivery_list(subscription=sub), request, view=self)
        return paginator.get_paginated_response(s.DeliveryOut(page, many=True).data)


class RedeliverView(APIView):
    @extend_schema(
        summary="Send a delivery again",
        description="The event is sent again (same `webhook-id`) as soon as the dispatcher runs, whatever "
        "the delivery's state. Refused while the subscription is disabled: enable it first.",
        request=s.EmptyIn,
        responses={200: s.DeliveryOut, **errors({409: "The subscription is disabled (`subscription_disabled`)."})},
    )
    def post(self, request: Request, subscription_id, delivery_id) -> Response:
        sub = selectors.subscription_get(tenant=tenancy.tenant_of(request), subscription_id=subscription_id)
        delivery = selectors.delivery_get(subscription=sub, delivery_id=delivery_id)
        _valid(s.EmptyIn, request)
        if not sub.enabled:
            raise Conflict("The subscription is disabled; enable it first.", code="subscription_disabled")
        services.redeliver(delivery=delivery)
        delivery = selectors.delivery_get(subscription=sub, delivery_id=delivery_id)
        return Response(s.DeliveryOut(delivery).data)
