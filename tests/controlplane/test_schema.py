"""What the OpenAPI schema promises about itself (issue 19); test_contract.py checks the
API against it."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def resolve(document: dict, schema: dict) -> dict:
    if "allOf" in schema and len(schema["allOf"]) == 1:  # a nullable or described reference
        schema = schema["allOf"][0]
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_operation_has_a_summary_and_a_description(document):
    found = list(operations(document))
    assert len(found) >= 23
    for method, path, operation in found:
        assert operation.get("summary"), (method, path)
        assert len(operation.get("description", "")) > 20, (method, path)


def test_docstrings_stay_out_of_the_schema(document):
    # Docstrings are written for engineers: reST markup and internal names must not show.
    texts = [op.get("description", "") for _, _, op in operations(document)]
    texts += [c.get("description", "") for c in document["components"]["schemas"].values()]
    for text in texts:
        assert "``" not in text and ":class:" not in text and ":func:" not in text, text
    assert not any("Refuses fields it does not declare" in t or "one query per page" in t for t in texts)


def test_endpoints_have_one_shape_per_kind_with_a_discriminator(document):
    schemas = document["components"]["schemas"]
    for name in ("Endpoint", "EndpointCreate"):
        assert schemas[name]["discriminator"]["propertyName"] == "kind"
        assert set(schemas[name]["discriminator"]["mapping"]) == {"sftp", "s3"}
    create = {
        kind: resolve(document, {"$ref": ref})
        for kind, ref in schemas["EndpointCreate"]["discriminator"]["mapping"].items()
    }
    sftp_config = resolve(document, create["sftp"]["properties"]["config"])
    assert {"host", "port", "username", "host_keys"} <= set(sftp_config["properties"])
    assert sftp_config["properties"]["port"]["maximum"] == 65535
    assert sftp_config["additionalProperties"] is False
    s3_config = resolve(document, create["s3"]["properties"]["config"])
    assert {"bucket", "region", "role_arn", "sse"} <= set(s3_config["properties"])
    assert resolve(document, create["s3"]["properties"]["credentials"])["required"] == [
        "access_key_id",
        "secret_access_key",
    ]
    # A PATCH may give any config field of either kind: {} fits both, so anyOf, not oneOf.
    patch = document["components"]["schemas"]["PatchedEndpointPatch"]["properties"]["config"]
    assert len(resolve(document, patch)["anyOf"]) == 2
    credentials = document["paths"]["/api/v1/endpoints/{endpoint_id}/credentials"]["put"]["requestBody"]
    assert len(resolve(document, credentials["content"]["application/json"]["schema"])["oneOf"]) == 2


def test_route_options_are_typed(document):
    route_in = document["components"]["schemas"]["RouteIn"]["properties"]["options"]
    assert route_in["additionalProperties"] is False
    assert route_in["properties"]["on_conflict"]["enum"] == ["fail", "overwrite", "skip", "rename"]
    shown = document["components"]["schemas"]["RouteOut"]["properties"]["options"]
    assert set(shown["required"]) == set(route_in["properties"])


def test_lists_are_documented_as_pages(document):
    singles = {"/api/v1/tenant", "/api/v1/network"}
    lists = [(p, op) for m, p, op in operations(document) if m == "get" and "{" not in p and p not in singles]
    assert len(lists) == 8  # api-keys, oauth-clients, audit, endpoints, routes, transfers, pgp-keys, subscriptions
    for path, operation in lists:
        page = resolve(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
        assert page["required"] == ["results", "next"], path
        assert page["properties"]["results"]["type"] == "array"
        assert {p["name"] for p in operation["parameters"]} >= {"cursor", "limit"}, path


def test_every_operation_documents_its_errors_in_the_one_shape(document):
    for method, path, operation in operations(document):
        codes = set(operation["responses"])
        expected = {"401", "406"}
        if method != "get":
            expected.add("403")
        if "{" in path:
            expected.add("404")
        if method in {"post", "put", "patch"}:
            expected |= {"400", "413", "415"}
        assert expected <= codes, (method, path, expected - codes)
        for code in codes:
            if int(code) >= 400:
                body = operation["responses"][code]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)
                assert operation["responses"][code]["description"], (method, path, code)
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "fields", "request_id"]


def test_every_response_documents_its_request_id_header(document):
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["required"] is True, (method, path, code)
            assert response["description"], (method, path, code)
    replayed = document["paths"]["/api/v1/transfers"]["post"]["responses"]["200"]["headers"]
    assert replayed["Idempotent-Replayed"]["schema"]["enum"] == ["true"]


def test_views_declare_the_errors_they_raise(document):
    run = document["paths"]["/api/v1/routes/{route_id}/run"]["post"]["responses"]
    assert {"409", "502", "503"} <= set(run)
    assert "409" in document["paths"]["/api/v1/transfers"]["post"]["responses"]
    assert "503" in document["paths"]["/api/v1/endpoints"]["post"]["responses"]


def test_oauth_tokens_are_a_documented_security_scheme_of_every_operation(document):
    schemes = document["components"]["securitySchemes"]
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token" and set(flow["scopes"]) == {"read", "write"}
    assert schemes["apiKey"]["scheme"] == "bearer"
    for method, path, operation in operations(document):
        named = {name for requirement in operation["security"] for name in requirement}
        assert named == {"apiKey", "oauth2", "mutualTls"}, (method, path)
