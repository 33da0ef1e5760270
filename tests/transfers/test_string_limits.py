"""Every string has a maximum and no path holds a character that splits a line (issue 13,
item 4)."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from drf_spectacular.generators import SchemaGenerator

from controlplane.text import CONTROL_CHARS
from tests.transfers.test_api_input import _body
from transfers import naming
from transfers.models import Route

V1 = "/api/v1"
LINE_SPLITTERS = ["\x85", "\u2028", "\u2029", "\x0b", "\x1c", "\x9f", "\r"]


def test_control_chars_are_every_cc_zl_zp_and_cs_code_point():
    wanted = {c for c in map(chr, range(sys.maxunicode + 1)) if unicodedata.category(c) in {"Cc", "Zl", "Zp", "Cs"}}
    matched = {c for c in map(chr, range(sys.maxunicode + 1)) if CONTROL_CHARS.match(c)}
    assert matched == wanted


def _unbounded_strings(node, path=""):
    """Paths of string schemas with neither maxLength, enum nor a format that bounds them."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not ({"maxLength", "enum"} & set(node) or node.get("format") == "uuid"):
        yield path
    for key, child in node.get("properties", {}).items():
        yield from _unbounded_strings(child, f"{path}.{key}")
    if "items" in node:
        yield from _unbounded_strings(node["items"], f"{path}[]")
    for combinator in ("oneOf", "anyOf", "allOf"):
        for child in node.get(combinator, []):
            yield from _unbounded_strings(child, path)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _unbounded_strings(node["additionalProperties"], f"{path}.*")


def test_every_request_string_in_the_schema_has_a_maximum():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    refs = set()
    for item in schema["paths"].values():
        for operation in item.values():
            content = (operation.get("requestBody") or {}).get("content", {})
            for media in content.values():
                ref = media["schema"].get("$ref", "")
                refs.add(ref.rsplit("/", 1)[-1])

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(components[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) if k != "enum" else v for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    unbounded = sorted(f"{name}{p}" for name in refs if name for p in _unbounded_strings(resolve(components[name])))
    assert unbounded == []
    options = resolve(components["RouteIn"])["properties"]["options"]["properties"]
    move_to = next(o for o in options["after_delivery"]["oneOf"] if o.get("type") == "object")
    assert move_to["properties"]["move_to"]["maxLength"] == 1024
    # Endpoint config and credentials are typed per kind, so the walk above saw their strings.
    configs = [kind["properties"]["config"] for kind in resolve(components["EndpointCreate"])["oneOf"]]
    assert [c["properties"]["host" if "host" in c["properties"] else "bucket"]["maxLength"] for c in configs] == [
        255,
        63,
    ]


@pytest.mark.parametrize("char", LINE_SPLITTERS)
def test_paths_and_names_refuse_every_line_splitter(char):
    for check in (naming.check_remote_path, naming.check_remote_name, naming.check_template):
        with pytest.raises(naming.UnsafeName):
            check(f"a{char}b")


@pytest.mark.django_db
def test_move_to_of_60000_characters_is_refused(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    body = _body(src, dst)
    body["options"]["after_delivery"] = {"move_to": "/" + "a" * 60_000}
    response = api.post(f"{V1}/routes", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["options.after_delivery.move_to"]
    body["options"]["after_delivery"] = {"move_to": "/" + "a" * 1023}
    assert api.post(f"{V1}/routes", body, format="json").status_code == 201
    assert Route.objects.get().options["after_delivery"]["move_to"] == "/" + "a" * 1023


@pytest.mark.django_db
@pytest.mark.parametrize("char", ["\x85", "\u2028"])
def test_every_path_field_refuses_c1_and_line_separators(api, make_endpoint, char):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    for where, value in [
        (("source", "path"), f"/out{char}x"),
        (("destination", "path"), f"/in{char}x"),
        (("destination", "name"), f"{{name}}{char}"),
        (("source", "pattern"), f"*{char}.csv"),
        (("options", "after_delivery"), {"move_to": f"/arch{char}ive"}),
        (("options", "done_marker"), f"{{name}}{char}.done"),
    ]:
        body = _body(src, dst)
        body[where[0]][where[1]] = value
        response = api.post(f"{V1}/routes", body, format="json")
        assert response.status_code == 400, (where, response.content)
    adhoc = {
        "source": {"endpoint": str(src.id), "path": f"/out/a{char}b"},
        "destination": {"endpoint": str(dst.id), "path": "/in/"},
    }
    response = api.post(f"{V1}/transfers", adhoc, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 400, response.content
    response = api.get(f"{V1}/transfers", {"path_prefix": f"/a{char}"})
    assert response.status_code == 400, response.content
    for config in ({"root": f"/data{char}"},):
        response = api.patch(f"{V1}/endpoints/{src.id}", {"config": config}, format="json")
        assert response.status_code == 400, (config, response.content)
    response = api.patch(f"{V1}/endpoints/{dst.id}", {"config": {"prefix": f"in{char}/"}}, format="json")
    assert response.status_code == 400, response.content
