"""Lists page with a cursor; a cursor that is not one of Ferry's is the client's mistake."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/routes", "/api/v1/transfers", "/api/v1/endpoints", "/api/v1/api-keys"])
def test_a_cursor_that_is_not_a_next_link_is_a_400(api, path):
    response = api.get(path, {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["cursor"]


@pytest.mark.parametrize("limit", ["abc", "0", "201", "-1", "1.5", "\u0661"])
def test_a_limit_outside_1_to_200_is_a_400(api, limit):
    response = api.get("/api/v1/routes", {"limit": limit})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["limit"]


def test_a_limit_of_200_is_a_page_of_200(api):
    assert api.get("/api/v1/routes", {"limit": "200"}).status_code == 200


def test_pages_follow_next(api):
    for n in range(3):
        assert api.post("/api/v1/api-keys", {"label": f"k{n}"}, format="json").status_code == 201
    first = api.get("/api/v1/api-keys", {"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["next"] is None  # 3 issued + the client's own
    assert not {k["id"] for k in first["results"]} & {k["id"] for k in second["results"]}
