"""OpenAPI: what the schema promises beyond what drf-spectacular finds on its own.

- :class:`ApiKeyScheme`: the API-key authentication.
- :class:`FerryAutoSchema`: descriptions come only from ``extend_schema`` (and field
  ``help_text``); docstrings are written for Ferry's engineers and stay out of the schema.
  Serializers may say ``closed_schema = True`` (unknown fields refused:
  ``additionalProperties: false``) and ``schema_partial = True`` (merged into the current
  object: nothing required).
- :func:`add_error_responses` (a postprocessing hook): every operation lists the error
  responses it can give, in the one error shape (``controlplane/errors.py``), by rule
  (:func:`standard_errors`), and the headers every response carries; a view adds the
  codes only it raises (409, 502, 503…) with :func:`errors`.

docs/api.md says what the schema promises.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_override
from drf_spectacular.utils import OpenApiResponse

ERROR_REF = {"$ref": "#/components/schemas/Error"}

# The shape controlplane.errors.body() renders, as a component every error response uses.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every 4xx and 5xx answer has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "A stable machine-readable code, such as `validation_error` or `not_found`.",
                },
                "message": {"type": "string", "description": "What went wrong, for people."},
                "fields": {
                    "type": "object",
                    "description": "Problems by the path of the input they concern, such as `config.host`.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "request_id": {
                    "type": "string",
                    "nullable": True,
                    "description": "The id of this request (also in the `X-Request-ID` header).",
                },
            },
        }
    },
}

# Customer-facing words for the responses every operation may give.
DESCRIPTIONS: dict[int, str] = {
    400: "The request is not valid: `error.fields` names each problem by its path (`config.host`).",
    401: "No API key, or the key is not valid or revoked (`not_authenticated`), or it has expired (`api_key_expired`).",
    403: "The API key is read-only.",
    404: "Not found (an id of another tenant is not found either).",
    406: "The `Accept` header does not allow `application/json`.",
    409: "The request conflicts with the current state.",
    413: "The request body is larger than the limit (64 KiB by default).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    429: "Too many requests: the tenant's rate limit for this kind of operation is reached in this region "
    "(`throttled`). Wait the seconds in `Retry-After`.",
    502: "A server Ferry depends on answered with an error.",
    503: "A service Ferry depends on is not available now; nothing was changed, try again.",
}

# RequestContextMiddleware answers every request with its id.
REQUEST_ID_HEADER: dict[str, Any] = {
    "required": True,
    "schema": {"type": "string"},
    "description": "This request's id: the client's own `X-Request-ID` when it is 1-64 of "
    "`[A-Za-z0-9._-]`, else a new one. Quote it when asking about a request.",
}

# TenantRateThrottle's wait, in whole seconds (controlplane/throttling.py).
RETRY_AFTER_HEADER: dict[str, Any] = {
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "description": "Seconds until the rate limit's window ends.",
}

_SUCCESS = {"200": "OK.", "201": "Created.", "204": "Done; no body."}
_WRITE = {"post", "put", "patch", "delete"}
_BODY = {"post", "put", "patch"}


def error_response(status: int, description: str | None = None) -> OpenApiResponse:
    """An error response in the one shape, for ``extend_schema(responses=...)``."""
    return OpenApiResponse(response=ERROR_REF, description=description or DESCRIPTIONS[status])


def errors(descriptions: dict[int, str]) -> dict[int, OpenApiResponse]:
    """A view's own error codes and what they mean there, as ``extend_schema`` responses."""
    return {status: error_response(status, text) for status, text in descriptions.items()}


def standard_errors(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses any operation of this kind can answer (the rule, in one place)."""
    codes = [401, 406, 429]  # every call is authenticated, rate-limited and answers JSON only
    params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
    if method in _BODY or params:
        codes.append(400)  # a body (even an empty action's) or a query parameter can be wrong
    if method in _WRITE:
        codes.append(403)  # read-only keys cannot write
    if "{" in path:
        codes.append(404)  # an unknown id, or another tenant's
    if method in _BODY:
        codes += [413, 415]
    return codes


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error component and the standard errors."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in standard_errors(method, path, operation):
                responses.setdefault(
                    str(status),
                    {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR_REF}}},
                )
            for status, response in responses.items():
                if not response.get("description"):
                    response["description"] = _SUCCESS.get(status, "")
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = REQUEST_ID_HEADER
                if status == "401":
                    headers["WWW-Authenticate"] = {"schema": {"type": "string"}, "description": "`Bearer`."}
                if status == "429":
                    headers["Retry-After"] = RETRY_AFTER_HEADER
            operation["responses"] = dict(sorted(responses.items()))
    _overlapping_choices_are_any_of(result["components"]["schemas"])
    return result


def _overlapping_choices_are_any_of(components: dict[str, Any]) -> None:
    # A choice between shapes that all require nothing (a PATCH of either kind's config)
    # cannot be "exactly one": ``{}`` fits them all. It is any of them.
    for component in components.values():
        if "oneOf" not in component or "discriminator" in component:
            continue
        branches = [components.get(b.get("$ref", "").rsplit("/", 1)[-1], b) for b in component["oneOf"]]
        if all(not branch.get("required") for branch in branches):
            component["anyOf"] = component.pop("oneOf")


class FerryAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema without docstrings: they are written for Ferry's engineers
    (and name internals); the schema's words are the ones given to ``extend_schema``."""

    def get_description(self) -> str:  # type: ignore[override]
        return ""

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        schema.pop("description", None)
        explicit = get_override(serializer, "description")
        if explicit:
            schema["description"] = explicit
        if getattr(serializer, "schema_partial", False):
            # Merged into the current object: nothing is required and nothing defaults.
            schema.pop("required", None)
            for field in schema.get("properties", {}).values():
                field.pop("default", None)
        if getattr(serializer, "closed_schema", False):
            # The serializer refuses fields it does not declare (StrictSerializer).
            schema["additionalProperties"] = False
        return schema

    def _map_response_type_hint(self, method: Any) -> dict[str, Any]:
        schema = super()._map_response_type_hint(method)
        schema.pop("description", None)  # a method field's docstring is internal too
        return schema


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.tenancy.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key: `Authorization: Bearer fry_<prefix>_<secret>`.",
        }


class OAuthScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.oauth.OAuthTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": "An access token from `/oauth/token` (client credentials grant) for a client "
            "registered with `POST /api/v1/oauth-clients`: `Authorization: Bearer <token>`.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/oauth/token",
                    "scopes": {"read": "Read the tenant's objects", "write": "Read and change the tenant's objects"},
                }
            },
        }


class MtlsScheme(OpenApiAuthenticationExtension):
    """Only where the deployment's ALB verifies client certificates (docs/identity.md)."""

    target_class = "controlplane.mtls.MtlsAuthentication"
    name = "mutualTls"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Amzn-Mtls-Clientcert-Subject",
            "description": "A client certificate registered to the tenant, verified by the load balancer in "
            "mutual-TLS deployments. The load balancer sets this header; a client cannot.",
        }
