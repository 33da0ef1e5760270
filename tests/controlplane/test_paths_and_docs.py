"""The docs work offline, the schema answers JSON when asked, and both slash forms of a
path reach the same view (a POST body included)."""

import re

import pytest
from django.test import Client

from controlplane.slashes import other_form

pytestmark = pytest.mark.django_db


def test_docs_pages_load_their_assets_from_this_server():
    for page in ("/api/docs/", "/api/redoc/"):
        html = Client().get(page).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, page
        assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
        assets = [s for s in sources if s.endswith(".js")]
        assert assets, page
        for asset in assets:
            response = Client().get(asset)
            assert response.status_code == 200, asset
            assert int(response.headers.get("Content-Length", "1")) > 0


@pytest.mark.parametrize("ask", [{"HTTP_ACCEPT": "application/json"}, {"QUERY_STRING": "format=json"}])
def test_the_schema_is_json_when_asked(ask):
    response = Client().get("/api/schema/", **ask)
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.parametrize("path", ["/admin", "/api/docs", "/api/schema", "/api/redoc"])
def test_pages_answer_without_their_trailing_slash(path):
    response = Client().get(path)
    assert response.status_code in (200, 302), response.status_code  # the admin sends to its login
    if response.status_code == 302:
        assert response["Location"].startswith("/admin/login/")


def test_api_paths_answer_with_a_trailing_slash_and_keep_a_post_body(api):
    assert api.get("/api/v1/tenant/").status_code == 200
    assert api.get("/api/v1/tenant/").json() == api.get("/api/v1/tenant").json()
    # A POST through the other form reaches the view with its body: validation speaks, not a 404.
    response = api.post("/api/v1/endpoints/", {"name": "x", "kind": "nonsense"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_unknown_paths_stay_json_404s():
    for path in ("/api/v1/nothing", "/api/v1/nothing/", "/nowhere"):
        response = Client().get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_the_admins_site_link_points_at_the_docs():
    from django.contrib import admin

    assert admin.site.site_url == "/api/docs/"
    assert Client().get(admin.site.site_url).status_code == 200


def test_other_form_toggles_the_trailing_slash():
    assert other_form("/a/b") == "/a/b/"
    assert other_form("/a/b/") == "/a/b"
    assert other_form("/") is None
