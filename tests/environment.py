"""Loaded with ``-p`` before Django reads its settings: the test profile's environment.

Timers are shortened to seconds, loopback is allowed through the SSRF guard explicitly,
and nothing points at real AWS: the session fixtures set AWS_ENDPOINT_URL to a moto server
of their own before any client is built.
"""

import os

_DEFAULTS = {
    "FERRY_PROFILE": "test",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "FERRY_REGION": "us-east-1",
    "FERRY_NETGUARD_ALLOW": "127.0.0.0/8,::1/128",
    "FERRY_CLAIM_TTL": "6",
    # Step Functions' HeartbeatSeconds for the step tasks (the consumer beats every second).
    "FERRY_STEP_HEARTBEAT_SECONDS": "3",
    "FERRY_HEARTBEAT_INTERVAL": "1",
    "FERRY_SLOT_TTL": "8",
    "FERRY_SLOT_WAIT": "0.5",
    "FERRY_SLOT_RETRY": "0.5",
    "FERRY_SLOT_IDLE": "1",
    "FERRY_LEASE_TTL": "4",
    "FERRY_LEASE_GRACE": "2",
    "FERRY_KEEPER_INTERVAL": "0.5",
    "FERRY_SCHEDULER_INTERVAL": "1",
    "FERRY_REDISPATCH_AFTER": "3",
    "FERRY_PARTITIONS": "8",
    "FERRY_SQS_WAIT_TIME": "1",
    "FERRY_RETRY_BASE_SECONDS": "0.5",
    "FERRY_RETRY_CAP_SECONDS": "2",
    "FERRY_SQS_POLLING_INTERVAL": "0.1",
    "FERRY_AWS_MAX_ATTEMPTS": "3",
    "FERRY_READY_TIMEOUT": "1",
    "LOG_LEVEL": "INFO",
    # Notifications: the dispatcher loop, its claim and webhook retries in (fractions of) seconds.
    "FERRY_NOTIFY_INTERVAL": "0.2",
    "FERRY_NOTIFY_CLAIM_TTL": "3",
    "FERRY_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "FERRY_WEBHOOK_RETRY_CAP_SECONDS": "1",
    "FERRY_WEBHOOK_RETRY_WINDOW_SECONDS": "120",
    "FERRY_WEBHOOK_DISABLE_AFTER_FAILURES": "20",
    "FERRY_WEBHOOK_CONNECT_TIMEOUT": "2",
    "FERRY_WEBHOOK_READ_TIMEOUT": "5",
}
for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)
# Never let a developer's real credentials or endpoint leak into a test run: until the
# moto fixture points AWS_ENDPOINT_URL at its server, AWS calls go to a closed port and
# fail at once instead of reaching real AWS.
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
