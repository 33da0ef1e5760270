"""Cursor pagination in Ferry's list shape: ``{"results": [...], "next": url|null}``."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.errors import ValidationFailed


class CursorPage(CursorPagination):
    """Newest first; ``?cursor=`` from ``next``; ``?limit=`` up to ``max_page_size``."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        # DRF ignores a limit it cannot use (``limit=abc`` or ``0`` gives the default page,
        # ``limit=500`` the maximum); the schema says 1 to max_page_size, so the rest is a 400.
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationFailed(
                "The request is not valid.", fields={"limit": [f"An integer from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def decode_cursor(self, request: Request) -> Cursor | None:
        # DRF answers a cursor it cannot read with 404, as if the list did not exist; it is
        # a bad query parameter (and the schema documents it as one).
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationFailed(
                "The request is not valid.", fields={"cursor": ["Use the cursor of a `next` link."]}
            ) from None

    def get_paginated_response(self, data) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: the cursor of the previous page's `next` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {"results": schema, "next": {"type": "string", "nullable": True, "format": "uri"}},
        }


class FirstPage(CursorPage):
    """The first page of a list that another endpoint answers with (a manual run's
    transfers): the default page size whatever the request's own query says, and a ``next``
    link into ``list_url``, the list endpoint that selects the same rows in the same order
    and pages on through the rest with its own cursor."""

    def __init__(self, list_url: str) -> None:
        self.list_url = list_url

    def get_page_size(self, request: Request) -> int:
        return self.page_size

    def decode_cursor(self, request: Request) -> Cursor | None:
        return None

    def paginate_queryset(self, queryset, request, view=None):  # type: ignore[no-untyped-def]
        page = super().paginate_queryset(queryset, request, view)
        self.base_url = self.list_url  # the cursor of `next` goes on the list's address
        return page
