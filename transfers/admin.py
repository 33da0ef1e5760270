"""Routes and transfers in the admin: read-only, with a re-drive action and button.

Operators look here; every change goes through ``transfers.services``. Re-drive needs
its own permission (``transfers.redrive_transfer``), not just staff status.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from controlplane.admin import ReadOnlyAdmin, ReadOnlyInline
from controlplane.errors import Conflict
from transfers import services
from transfers.models import Route, Transfer, TransferEvent
from transfers.states import REDRIVABLE

REDRIVE_PERMISSION = "transfers.redrive_transfer"


@admin.register(Route)
class RouteAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "tenant",
        "trigger_type",
        "source_endpoint",
        "source_path",
        "destination_endpoint",
        "destination_path",
        "enabled",
        "partition",
        "next_run_at",
    ]
    list_filter = ["trigger_type", "enabled"]
    search_fields = ["name", "id"]
    list_select_related = ["tenant", "source_endpoint", "destination_endpoint"]


class TransferEventInline(ReadOnlyInline):
    """The timeline, oldest first."""

    model = TransferEvent
    fields = ["at", "from_state", "to_state", "attempt", "region", "worker", "detail"]
    readonly_fields = fields
    ordering = ["at", "id"]
    verbose_name_plural = "Timeline"

    def has_view_permission(self, request, obj=None) -> bool:
        # Whoever may see a transfer sees its timeline (no separate event permission).
        return request.user.has_perm("transfers.view_transfer")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "tenant",
        "route",
        "state",
        "source_path",
        "destination_path",
        "attempt",
        "region",
        "last_error_code",
        "created_at",
    ]
    list_filter = ["state", "region", ("route", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "source_path", "destination_path", "request_id"]
    list_select_related = ["tenant", "route"]
    # No date_hierarchy: its DISTINCT over dates scans the whole table at every page view.
    show_full_result_count = False
    inlines = [TransferEventInline]
    actions = ["redrive_selected"]
    change_form_template = "admin/transfers/transfer/change_form.html"
    # No idempotency data: the key is the customer's, and nothing here needs it.
    exclude = ["idempotency_key", "idempotency_fingerprint"]

    def has_redrive_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REDRIVE_PERMISSION)

    @admin.action(description="Re-drive selected", permissions=["redrive"])
    def redrive_selected(self, request: HttpRequest, queryset) -> None:
        done = refused = 0
        for transfer in queryset.filter(state__in=list(REDRIVABLE)):
            try:
                services.redrive(transfer, by=f"admin {request.user.get_username()}")
                done += 1
            except Conflict:
                refused += 1  # moved on since the page was drawn
        skipped = queryset.exclude(state__in=list(REDRIVABLE)).count() + refused
        self.message_user(request, f"Re-driven: {done}. Not failed or dead (left alone): {skipped}.", messages.INFO)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/redrive/",
                self.admin_site.admin_view(self.redrive_view),
                name="{}_{}_redrive".format(*info),
            ),
            *super().get_urls(),
        ]

    def redrive_view(self, request: HttpRequest, object_id: str):
        """The re-drive button of the transfer page (POST only, own permission)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_redrive_permission(request):
            raise PermissionDenied
        transfer = get_object_or_404(Transfer, pk=object_id)
        try:
            services.redrive(transfer, by=f"admin {request.user.get_username()}")
            self.message_user(request, "Re-driven: the transfer is pending again.", messages.SUCCESS)
        except Conflict as exc:
            self.message_user(request, exc.message, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:transfers_transfer_change", args=[transfer.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        transfer = Transfer.objects.filter(pk=object_id).only("state").first()
        extra_context = {
            **(extra_context or {}),
            "can_redrive": bool(transfer and transfer.state in REDRIVABLE and self.has_redrive_permission(request)),
        }
        return super().change_view(request, object_id, form_url, extra_context)
