"""/admin/ and /metrics answer only on FERRY_ADMIN_HOSTS (controlplane/operators/access.py)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/metrics", "/admin/sso/login/"])
def test_operator_pages_are_404_on_the_public_name(settings, path):
    settings.FERRY_ADMIN_HOSTS = ["ops.ferry.internal"]
    settings.ALLOWED_HOSTS = ["api.ferry.example", "ops.ferry.internal"]
    response = Client().get(path, HTTP_HOST="api.ferry.example")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not found."


def test_operator_pages_answer_on_the_operators_name_and_the_api_on_both(settings):
    settings.FERRY_ADMIN_HOSTS = ["ops.ferry.internal"]
    settings.ALLOWED_HOSTS = ["api.ferry.example", "ops.ferry.internal"]
    assert Client().get("/admin/login/", HTTP_HOST="ops.ferry.internal:8443").status_code == 200
    assert Client().get("/metrics", HTTP_HOST="ops.ferry.internal").status_code == 200
    assert Client().get("/readyz", HTTP_HOST="api.ferry.example").status_code != 404
    assert Client().get("/api/v1/tenant", HTTP_HOST="api.ferry.example").status_code == 401


def test_without_the_setting_every_host_serves_them():
    assert Client().get("/admin/login/", HTTP_HOST="anything.example").status_code == 200
