"""The engine runs under the configuration its caller hands in, never the environment."""

from __future__ import annotations

import pytest

from controlplane import aws
from engine import config, s3client
from engine.config import EngineConfig
from engine.spec import S3Spec

SPEC = S3Spec(endpoint_id="cfg", version=1, bucket="b", region="us-east-1", access_key_id="k", secret_access_key="s")


@pytest.fixture
def restore_config():
    before = config.current()
    yield
    config.configure(before)
    s3client.reset_clients()


def test_clients_follow_the_configured_policy_not_the_environment(restore_config, monkeypatch):
    monkeypatch.setenv("FERRY_AWS_READ_TIMEOUT", "999")
    monkeypatch.setenv("FERRY_S3_ADDRESSING_STYLE", "virtual")
    config.configure(EngineConfig(connect_timeout=3, read_timeout=7, max_attempts=2, addressing_style="path"))
    made = s3client.client(SPEC).meta.config
    assert (made.connect_timeout, made.read_timeout) == (3, 7)
    # botocore counts max_attempts as retries: one more attempt in all.
    assert made.retries == {"mode": "adaptive", "total_max_attempts": 3}
    # And no SigV4 payload hash (the engine's uploads carry their own signed checksum).
    assert made.s3 == {"addressing_style": "path", "payload_signing_enabled": False}


def test_configuring_anew_never_reuses_a_client_built_under_the_old_policy(restore_config):
    config.configure(EngineConfig(read_timeout=7))
    first = s3client.client(SPEC)
    assert s3client.client(SPEC) is first
    config.configure(EngineConfig(read_timeout=8))
    assert s3client.client(SPEC) is not first


def test_the_workers_app_configured_the_engine_from_settings(settings):
    # workers/apps.py ran at Django start-up; the control plane's clients share the policy.
    assert config.current() == aws.engine_config()
    assert config.current().read_timeout == settings.FERRY_AWS_READ_TIMEOUT
    assert aws.client_config().read_timeout == settings.FERRY_AWS_READ_TIMEOUT


def test_a_config_out_of_range_is_refused():
    with pytest.raises(ValueError):
        EngineConfig(addressing_style="sideways")
    with pytest.raises(ValueError):
        EngineConfig(max_attempts=0)
