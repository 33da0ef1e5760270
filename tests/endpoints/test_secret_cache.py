"""Secret versions read by id are kept a while in the process (endpoints.secrets; a version's
value never changes), the current version never is."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from endpoints import secrets


@pytest.fixture
def reads(moto):
    """GetSecretValue calls of this region's Secrets Manager client from now on."""
    calls: Counter[str] = Counter()

    def seen(model, **_):
        calls[model.name] += 1

    secrets.forget_cached()
    client = secrets._client(secrets.own_region())
    client.meta.events.register("before-call.secrets-manager", seen, unique_id="test-secret-cache")
    yield calls
    client.meta.events.unregister("before-call.secrets-manager", unique_id="test-secret-cache")
    secrets.forget_cached()


@pytest.fixture
def stored(moto):
    return secrets.store(tenant_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), credentials={"password": "one-Secret-1"})


def test_a_version_read_by_id_is_read_once(stored, reads):
    for _ in range(3):
        assert secrets.resolve(arn=stored.arn, version_id=stored.version_id) == (
            {"password": "one-Secret-1"},
            stored.version_id,
        )
    assert reads["GetSecretValue"] == 1


def test_the_current_version_is_always_read(stored, reads):
    for _ in range(2):
        assert secrets.resolve(arn=stored.arn)[0] == {"password": "one-Secret-1"}
    assert reads["GetSecretValue"] == 2


def test_a_rotation_is_a_new_version_and_read_at_once(stored, reads):
    secrets.resolve(arn=stored.arn, version_id=stored.version_id)
    rotated = secrets.rotate(arn=stored.arn, credentials={"password": "two-Secret-2"})
    assert secrets.resolve(arn=stored.arn, version_id=rotated.version_id)[0] == {"password": "two-Secret-2"}
    # The old version still answers from the cache, with its own value.
    assert secrets.resolve(arn=stored.arn, version_id=stored.version_id)[0] == {"password": "one-Secret-1"}
    assert reads["GetSecretValue"] == 2


def test_a_cached_value_is_a_copy(stored, reads):
    first, _ = secrets.resolve(arn=stored.arn, version_id=stored.version_id)
    first["password"] = "changed by the caller"
    assert secrets.resolve(arn=stored.arn, version_id=stored.version_id)[0] == {"password": "one-Secret-1"}


def test_a_ttl_of_zero_turns_the_cache_off(stored, reads, settings):
    settings.FERRY_SECRETS_CACHE_SECONDS = 0
    for _ in range(2):
        secrets.resolve(arn=stored.arn, version_id=stored.version_id)
    assert reads["GetSecretValue"] == 2
