"""Routes, batches and transfers in the admin: read-only, with re-drive and cancel actions and buttons.

Operators look here; every change goes through ``transfers.services``. Re-drive and cancel
each need their own permission (``transfers.redrive_transfer``, ``transfers.cancel_transfer``),
not just staff status, and each leaves an entry in the admin's history of the transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from controlplane.admin import ReadOnlyAdmin, ReadOnlyInline
from controlplane.errors import Conflict
from transfers import services
from transfers.models import Batch, Route, Transfer, TransferEvent
from transfers.states import REDRIVABLE, State

REDRIVE_PERMISSION = "transfers.redrive_transfer"
CANCEL_PERMISSION = "transfers.cancel_transfer"
CANCELLABLE = services.CANCELLABLE


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


@dataclass(frozen=True)
class _Operation:
    """One operator action on transfers: who may, from which states, and what it does."""

    verb: str  # "Re-driven" / "Cancelled", for messages and the history entry
    permission: str
    states: frozenset[State]
    run: Callable[..., Transfer]
    done: str  # what the single-transfer button says afterwards


OPERATIONS = {
    "redrive": _Operation(
        "Re-driven", REDRIVE_PERMISSION, REDRIVABLE, services.redrive, "Re-driven: the transfer is pending again."
    ),
    "cancel": _Operation("Cancelled", CANCEL_PERMISSION, CANCELLABLE, services.cancel, "Cancelled."),
}


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = [
        "short_id",
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
    list_display_links = ["short_id"]
    # The tenant filter lists the tenants table (small), not a DISTINCT over transfers.
    list_filter = ["state", "region", "tenant", ("route", admin.RelatedOnlyFieldListFilter), "last_error_code"]
    search_fields = ["id", "source_path", "destination_path", "=request_id"]
    list_select_related = ["tenant", "route"]
    # No date_hierarchy: its DISTINCT over dates scans the whole table at every page view.
    show_full_result_count = False
    inlines = [TransferEventInline]
    actions = ["redrive_selected", "cancel_selected"]
    change_form_template = "admin/transfers/transfer/change_form.html"
    # No idempotency data: the key is the customer's, and nothing here needs it.
    exclude = ["idempotency_key", "idempotency_fingerprint"]

    @admin.display(description="id", ordering="id")
    def short_id(self, transfer: Transfer) -> str:
        # Eight hex digits find a transfer in search and logs; the full id is on hover.
        return format_html('<span title="{}">{}</span>', transfer.id, str(transfer.id)[:8])

    def has_redrive_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REDRIVE_PERMISSION)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CANCEL_PERMISSION)

    def _operate(self, request: HttpRequest, name: str, transfer: Transfer) -> None:
        """Run one operation through ``transfers.services`` and record it in the admin's history."""
        op = OPERATIONS[name]
        before = transfer.state  # the service updates the instance it is given
        op.run(transfer, by=f"admin {request.user.get_username()}")
        self.log_change(request, transfer, f"{op.verb} from {before} by {request.user.get_username()}.")

    def _operate_selected(self, request: HttpRequest, queryset, name: str) -> None:
        op = OPERATIONS[name]
        done = refused = 0
        # Counted first: the ones operated on leave op.states.
        not_eligible = queryset.exclude(state__in=list(op.states)).count()
        for transfer in queryset.filter(state__in=list(op.states)).select_related(
            "source_endpoint", "destination_endpoint"
        ):
            try:
                self._operate(request, name, transfer)
                done += 1
            except Conflict:
                refused += 1  # moved on since the page was drawn
        skipped = not_eligible + refused
        self.message_user(request, f"{op.verb}: {done}. Not in a state for it (left alone): {skipped}.", messages.INFO)

    @admin.action(description="Re-drive selected", permissions=["redrive"])
    def redrive_selected(self, request: HttpRequest, queryset) -> None:
        self._operate_selected(request, queryset, "redrive")

    @admin.action(description="Cancel selected", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset) -> None:
        self._operate_selected(request, queryset, "cancel")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            *(
                path(
                    f"<path:object_id>/{name}/",
                    self.admin_site.admin_view(self.operation_view),
                    {"name": name},
                    name="{}_{}_{}".format(*info, name),
                )
                for name in OPERATIONS
            ),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, object_id: str, name: str):
        """The re-drive and cancel buttons of the transfer page (POST only, own permissions)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(OPERATIONS[name].permission):
            raise PermissionDenied
        transfer = get_object_or_404(Transfer, pk=object_id)
        try:
            self._operate(request, name, transfer)
            self.message_user(request, OPERATIONS[name].done, messages.SUCCESS)
        except Conflict as exc:
            self.message_user(request, exc.message, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:transfers_transfer_change", args=[transfer.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        transfer = Transfer.objects.filter(pk=object_id).only("state").first()
        allowed = {
            f"can_{name}": bool(transfer and transfer.state in op.states and request.user.has_perm(op.permission))
            for name, op in OPERATIONS.items()
        }
        extra_context = {**(extra_context or {}), **allowed}
        return super().change_view(request, object_id, form_url, extra_context)


class BatchTransferInline(ReadOnlyInline):
    """The batch's transfers, by destination path (a link to each one's own page)."""

    model = Transfer
    fk_name = "batch"
    fields = ["state", "source_path", "destination_path", "bytes_total", "sha256", "finished_at"]
    readonly_fields = fields
    ordering = ["destination_path", "id"]
    show_change_link = True
    verbose_name_plural = "Transfers"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("transfers.view_transfer")


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    """Route runs, read-only: counts and manifest frozen at completion (docs/batches.md)."""

    list_display = [
        "id",
        "tenant",
        "route",
        "trigger",
        "state",
        "size",
        "succeeded",
        "dead",
        "manifest_state",
        "created_at",
        "completed_at",
    ]
    list_filter = ["state", "trigger", "manifest_state", "tenant"]
    search_fields = ["=id"]
    list_select_related = ["tenant", "route"]
    show_full_result_count = False
    inlines = [BatchTransferInline]
    # The manifest can hold thousands of entries: the inline lists the transfers instead.
    exclude = ["manifest"]
