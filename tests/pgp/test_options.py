"""The OpenPGP route options, pure: shapes and the output name rule."""

from __future__ import annotations

import uuid

import pytest

from transfers import options

KEY = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("path", "opts", "expected"),
    [
        ("/in/a.csv", {"encrypt": [KEY]}, "/in/a.csv.pgp"),
        ("/in/a.csv", {"encrypt": [KEY], "armor": True}, "/in/a.csv.asc"),
        ("/in/a.csv", {"sign": KEY}, "/in/a.csv.pgp"),
        ("/in/a.csv.pgp", {"decrypt": KEY}, "/in/a.csv"),
        ("/in/a.csv.GPG", {"decrypt": KEY}, "/in/a.csv"),
        ("/in/a.csv.asc", {"verify_signature": KEY}, "/in/a.csv"),
        ("/in/a.csv", {"decrypt": KEY}, "/in/a.csv"),
        ("/in/.pgp", {"decrypt": KEY}, "/in/.pgp"),
        ("/in/a.gpg", {"decrypt": KEY, "encrypt": [KEY]}, "/in/a.pgp"),  # re-encrypted for another
        ("/in/a.csv", {}, "/in/a.csv"),
    ],
)
def test_output_name_rule(path, opts, expected):
    assert options.pgp_output_path(path, {**options.DEFAULTS, **opts}) == expected


def test_key_ids_are_normalised_and_shapes_checked():
    upper = KEY.upper()
    out = options.normalize({"encrypt": [upper], "sign": upper})
    assert (out["encrypt"], out["sign"]) == ([KEY], KEY)
    with pytest.raises(options.InvalidOptions) as caught:
        options.normalize({"encrypt": [str(uuid.uuid4()) for _ in range(11)], "decrypt": 3, "armor": True})
    assert set(caught.value.fields) == {"encrypt", "decrypt"}
    with pytest.raises(options.InvalidOptions) as caught:
        options.normalize({"armor": True})
    assert set(caught.value.fields) == {"armor"}
