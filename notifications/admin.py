"""Notifications in the admin: subscriptions, events and deliveries, read-only, with a
"redeliver" action (its own permission, ``notifications.redeliver_delivery``) that calls
``notifications.services.redeliver`` and leaves an entry in the delivery's history.
The signing secret is never shown (nor its ARN)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from controlplane.admin import ReadOnlyAdmin, ReadOnlyInline
from notifications import services
from notifications.models import Delivery, DeliveryAttempt, Event, Subscription

REDELIVER_PERMISSION = "notifications.redeliver_delivery"


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "target", "url", "event_bus_arn", "enabled", "consecutive_failures", "disabled_at"]
    list_filter = ["target", "enabled"]
    search_fields = ["id", "url", "event_bus_arn"]
    list_select_related = ["tenant"]
    exclude = ["secret_arn"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "tenant", "route_id", "transfer_id", "created_at", "fanned_out_at"]
    list_filter = ["type"]
    search_fields = ["=id", "=transfer_id", "=route_id"]
    list_select_related = ["tenant"]
    show_full_result_count = False


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["at", "region", "ok", "status_code", "latency_ms", "error"]
    readonly_fields = fields
    ordering = ["at", "id"]
    verbose_name_plural = "Attempts"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("notifications.view_delivery")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "tenant",
        "event",
        "subscription",
        "state",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
    ]
    list_filter = ["state"]
    search_fields = ["=id", "=event__id"]
    list_select_related = ["tenant", "event", "subscription"]
    show_full_result_count = False
    inlines = [AttemptInline]
    actions = ["redeliver_selected"]

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REDELIVER_PERMISSION)

    @admin.action(description="Redeliver selected", permissions=["redeliver"])
    def redeliver_selected(self, request: HttpRequest, queryset) -> None:
        done = 0
        for delivery in queryset:
            services.redeliver(delivery=delivery)
            self.log_change(request, delivery, f"Redelivered by {request.user.get_username()}.")
            done += 1
        self.message_user(request, f"Redelivered: {done}. The dispatcher sends them at its next tick.", messages.INFO)
