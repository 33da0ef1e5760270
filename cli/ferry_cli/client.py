"""A small HTTP client of Ferry's public API (``/api/v1/``).

Every failure becomes :class:`ApiError` (the API answered with an error) or
:class:`NetworkError` (it could not be reached); the commands print either cleanly and
exit 1, never with a traceback.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from ferry_cli import __version__

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Terminal states (docs/transfers.md): nothing changes a transfer after these, but a
# re-drive of a dead one.
TERMINAL = frozenset({"succeeded", "skipped", "cancelled", "dead"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


class ApiError(Exception):
    """The API's error shape: ``{"error": {"code", "message", "fields", "request_id"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, list[str]] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.request_id = request_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status,
                "code": self.code,
                "message": self.message,
                "fields": self.fields,
                "request_id": self.request_id,
            }
        }


class NetworkError(Exception):
    """The API could not be reached (refused, timed out, name not found)."""


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    request_id = response.headers.get("X-Request-ID")
    if isinstance(error, dict):
        raw = error.get("fields")
        fields: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return ApiError(
            response.status_code,
            str(error.get("code") or "error"),
            str(error.get("message") or response.reason_phrase),
            {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in fields.items()},
            error.get("request_id") or request_id,
        )
    # Not Ferry's shape (a proxy's page, a wrong URL): say what came back, briefly.
    text = " ".join(response.text.split())[:200]
    message = f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
    return ApiError(response.status_code, "http_error", message, request_id=request_id)


class Client:
    """One API base URL and key; methods return the decoded JSON body."""

    def __init__(self, url: str, api_key: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + "/api/v1/",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": f"ferry-cli/{__version__}"},
            timeout=TIMEOUT,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; the JSON body, ``None`` for 204, or :class:`ApiError`."""
        try:
            response = self._http.request(
                method,
                path.lstrip("/"),
                json=json,
                params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise NetworkError(f"Cannot reach Ferry at {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "bad_response", "The API answered with something other than JSON."
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers)

    def pages(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """Rows of a cursor-paginated list (``{"results", "next"}``), up to ``limit`` rows."""
        page_size = min(limit, 200) if limit else 200
        yield from self.rows(self.get(path, limit=page_size, **params), limit=limit)

    def rows(self, body: dict[str, Any], *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows of a page already read (a list's, or a route run's answer) and of the pages
        its ``next`` links lead to, up to ``limit`` rows."""
        count = 0
        while True:
            for row in body["results"]:
                yield row
                count += 1
                if limit and count >= limit:
                    return
            cursor = body.get("next")
            if not cursor:
                return
            # `next` is an absolute URL carrying the cursor; follow it as given.
            try:
                response = self._http.get(cursor)
            except httpx.HTTPError as exc:
                raise NetworkError(f"Cannot reach Ferry at {self.url}: {exc}") from None
            if response.status_code >= 400:
                raise _error_from(response)
            body = response.json()

    # --- lookups by name or id ------------------------------------------------------------

    def _find(self, collection: str, ref: str, noun: str) -> dict[str, Any]:
        if _UUID.match(ref):
            return dict(self.get(f"{collection}/{uuid.UUID(ref)}"))
        matches = [row for row in self.pages(collection) if row.get("name") == ref]
        if not matches:
            raise ApiError(404, "not_found", f"No {noun} named {ref!r}.")
        return matches[0]

    def endpoint(self, ref: str) -> dict[str, Any]:
        """An endpoint by id or by name (names are unique per tenant)."""
        return self._find("endpoints", ref, "endpoint")

    def route(self, ref: str) -> dict[str, Any]:
        """A route by id or by name (names are unique per tenant)."""
        return self._find("routes", ref, "route")

    def transfer(self, transfer_id: str) -> dict[str, Any]:
        if not _UUID.match(transfer_id):
            raise ApiError(400, "bad_request", f"{transfer_id!r} is not a transfer id.")
        return dict(self.get(f"transfers/{uuid.UUID(transfer_id)}"))


def split_location(text: str) -> tuple[str, str]:
    """``ENDPOINT:PATH`` → (endpoint name or id, path). Endpoint names have no ``:``."""
    endpoint, sep, path = text.partition(":")
    if not sep or not endpoint or not path:
        raise ValueError(f"{text!r}: use ENDPOINT:PATH, such as my-sftp:/outbound/report.csv")
    return endpoint, path
