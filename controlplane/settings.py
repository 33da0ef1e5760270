"""Ferry settings: every value comes from the environment through one ``environ.Env``.

Profiles (``FERRY_PROFILE``):

- ``production`` (default): DEBUG off, ``SECRET_KEY`` and ``DATABASE_URL`` required; a
  database not on this machine is reached with verified TLS (``controlplane/dbtls.py``).
- ``local``: what ``make run`` uses; SQLite file under ``.local/``, a fixed dev key.
- ``test``: what ``make test`` uses; PostgreSQL, short timers.

Nothing here knows whether AWS is real or emulated: boto3 reads ``AWS_ENDPOINT_URL``
(and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``) itself when a client is built.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.conf import global_settings

from controlplane import egress, emulator
from controlplane.dbtls import RDS_CA_BUNDLE, verified_options

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

FERRY_PROFILE = env.str("FERRY_PROFILE", default="production")
if FERRY_PROFILE not in {"production", "local", "test"}:
    raise environ.ImproperlyConfigured(f"FERRY_PROFILE must be production, local or test, not {FERRY_PROFILE!r}")
_DEV = FERRY_PROFILE in {"local", "test"}
if _DEV and (_refusal := emulator.refusal(os.environ, FERRY_PROFILE)):
    raise environ.ImproperlyConfigured(_refusal)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if _DEV:
    SECRET_KEY = env.str("SECRET_KEY", default="ferry-local-development-key-not-for-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")  # required: raises ImproperlyConfigured when unset
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if _DEV else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "controlplane.adminsite.FerryAdminConfig",  # Django's admin with Ferry's pages
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # operators' login lockout (below)
    # Operators' second factor: TOTP devices (docs/identity.md, "Operators").
    "django_otp",
    "django_otp.plugins.otp_totp",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI and Redoc from the installed package: the docs work offline, pinned.
    "drf_spectacular_sidecar",
    "oauth2_provider",  # OAuth2 client credentials for machine clients (below)
    "controlplane",
    "endpoints",
    "transfers",
    "notifications",
    "workers",
]

MIDDLEWARE = [
    "controlplane.middleware.LivenessProbeMiddleware",
    "controlplane.middleware.RequestContextMiddleware",
    "controlplane.middleware.BodySizeLimitMiddleware",
    "controlplane.slashes.OptionalSlashMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: the audit log reads the acting operator or API key from the request.
    "controlplane.audit.AuditContextMiddleware",
    # request.user.is_verified(): the admin admits password logins only with a TOTP.
    "django_otp.middleware.OTPMiddleware",
    # /admin/ and /metrics answer only on FERRY_ADMIN_HOSTS (404 elsewhere).
    "controlplane.operators.access.OperatorHostsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a lockout decided during the login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- operators' logins (the admin) ----------------------------------------------------

# django-axes throttles password logins (docs/identity.md, "Login lockout"): 5 failures of
# one username from one address lock that pair out for 15 minutes (a further failure
# meanwhile starts the 15 minutes again); a success resets the count. Per pair, so nobody
# can lock an operator out from another address. The API's keys never pass through
# Django's authenticate() and are not counted. Its first backend refuses a locked-out pair
# before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # SSO (below); admits nobody unless FERRY_OIDC_ENABLED.
    "controlplane.operators.sso.FerryOIDCBackend",
]
AXES_FAILURE_LIMIT = env.int("FERRY_ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("FERRY_ADMIN_LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "controlplane.clientip.client_address"
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Axes keeps a failed login's form, passwords masked; the CSRF token is masked too.
AXES_SENSITIVE_PARAMETERS = ["csrfmiddlewaretoken"]
# Ferry registers read-only admin pages for the attempts itself (controlplane/admin.py).
AXES_ENABLE_ADMIN = False
# Plain INSERTs where axes' own handler nests a savepoint (refused under write forwarding).
AXES_HANDLER = "controlplane.loginlockout.ForwardingSafeHandler"

# Operators' identity (docs/identity.md, "Operators"). Password logins need a TOTP too
# (django-otp); SSO through OpenID Connect (mozilla-django-oidc) is off unless
# FERRY_OIDC_ENABLED, and maps the IdP's groups claim to Ferry's roles (viewer, operator,
# admin: controlplane/operators/roles.py). The IdP does the second factor for SSO logins.
FERRY_OIDC_ENABLED = env.bool("FERRY_OIDC_ENABLED", default=False)
FERRY_OIDC_ISSUER = env.str("FERRY_OIDC_ISSUER", default="")
# IdP group → Ferry role, e.g. "ferry-viewers=viewer,ferry-operators=operator,ferry-admins=admin".
FERRY_OIDC_ROLE_GROUPS = env.dict("FERRY_OIDC_ROLE_GROUPS", default={})
FERRY_OIDC_GROUPS_CLAIM = env.str("FERRY_OIDC_GROUPS_CLAIM", default="groups")
# mozilla-django-oidc's settings; read at each login, so they are always defined.
OIDC_RP_CLIENT_ID = env.str("FERRY_OIDC_CLIENT_ID", default="")
# From Secrets Manager on AWS (the task definition injects it), never the database.
OIDC_RP_CLIENT_SECRET = env.str("FERRY_OIDC_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("FERRY_OIDC_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("FERRY_OIDC_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("FERRY_OIDC_USERINFO_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("FERRY_OIDC_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("FERRY_OIDC_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("FERRY_OIDC_SCOPES", default="openid email profile groups")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?sso=failed"
# The endpoints left empty are read from the issuer's discovery document at the first SSO
# login (controlplane/operators/sso.py).
if FERRY_OIDC_ENABLED and not all((FERRY_OIDC_ISSUER, OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET)):
    raise environ.ImproperlyConfigured(
        "FERRY_OIDC_ENABLED needs FERRY_OIDC_ISSUER, FERRY_OIDC_CLIENT_ID and FERRY_OIDC_CLIENT_SECRET"
    )
if set(FERRY_OIDC_ROLE_GROUPS.values()) - {"viewer", "operator", "admin"}:
    raise environ.ImproperlyConfigured("FERRY_OIDC_ROLE_GROUPS maps IdP groups to viewer, operator or admin")
# Tests log operators in hundreds of times; PBKDF2's deliberate slowness buys nothing
# there (production and the local stack keep Django's default hashers). The OAuth client
# secrets' hasher is appended below.
_PASSWORD_HASHERS = (
    ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if FERRY_PROFILE == "test"
    else list(global_settings.PASSWORD_HASHERS)
)
# Authenticator apps show "Ferry: <username>" (the otpauth:// URI's issuer).
OTP_TOTP_ISSUER = "Ferry"
# The Host names /admin/ and /metrics answer on (empty: any host). On AWS the internal
# listener's name; the public listener answers 404 for them before they reach Django.
FERRY_ADMIN_HOSTS = env.list("FERRY_ADMIN_HOSTS", default=[])

# Mutual TLS (docs/identity.md, "Mutual TLS"): with the ALB verifying client certificates,
# the certificate's subject (X-Amzn-Mtls-Clientcert-Subject) identifies a tenant. Off
# ("off") unless the ALB verifies ("verify"): otherwise anyone could send the header.
FERRY_MTLS_MODE = env.str("FERRY_MTLS_MODE", default="off")
if FERRY_MTLS_MODE not in {"off", "verify"}:
    raise environ.ImproperlyConfigured("FERRY_MTLS_MODE must be off or verify")

# --- database -------------------------------------------------------------------------

LOCAL_DIR = Path(env.str("FERRY_LOCAL_DIR", default=str(BASE_DIR / ".local")))
_default_db: str | None
if FERRY_PROFILE == "local":
    _default_db = f"sqlite:///{LOCAL_DIR / 'ferry.sqlite3'}"
elif FERRY_PROFILE == "test":
    _default_db = "postgresql://postgres@127.0.0.1:5432/postgres"
else:
    _default_db = None
DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_db) if _default_db else env.db_url("DATABASE_URL")}
_db = DATABASES["default"]
# On AWS the password comes from Secrets Manager as its own variable (the task definition
# injects it), so DATABASE_URL carries no secret and can sit in plain configuration.
if _db_password := env.str("DATABASE_PASSWORD", default=""):
    _db["PASSWORD"] = _db_password
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on the busy timeout instead of failing mid-transaction. Every state
    # change is a compare-and-set, so no row locks are needed.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # On AWS the server's certificate is verified against the RDS CA bundle in the image
    # (controlplane/dbtls.py): encryption without verification lets anyone on the path
    # pose as the database.
    _db["OPTIONS"] = verified_options(
        _db.get("OPTIONS", {}),
        profile=FERRY_PROFILE,
        host=str(_db.get("HOST") or ""),
        ca_bundle=env.str("FERRY_DATABASE_CA_BUNDLE", default=RDS_CA_BUNDLE),
    )
    _db.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
    # Two checkouts on one machine must not share a test database.
    _suffix = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]
    _db.setdefault("TEST", {}).setdefault("NAME", env.str("FERRY_TEST_DB_NAME", default=f"test_ferry_{_suffix}"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- i18n, static -----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# The admin is the only HTML; finders let the local stack serve it without collectstatic.
WHITENOISE_USE_FINDERS = _DEV

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("FERRY_MAX_BODY_BYTES", default=64 * 1024)
FERRY_MAX_BODY_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE

SESSION_COOKIE_SECURE = not _DEV
CSRF_COOKIE_SECURE = not _DEV
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------------

REST_FRAMEWORK = {
    # OAuth access tokens first: it leaves ``fry_…`` API keys to the key class.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.oauth.OAuthTokenAuthentication",
        "controlplane.tenancy.ApiKeyAuthentication",
        # Only when FERRY_MTLS_MODE is "verify", and only through the ALB (controlplane/mtls.py).
        "controlplane.mtls.MtlsAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.tenancy.HasScopedApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["controlplane.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "controlplane.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "controlplane.schema.FerryAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Per tenant and scope (read, write, probe), counted in the region's Redis (throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["controlplane.throttling.TenantRateThrottle"],
}

# --- rate limits ------------------------------------------------------------------------

# Requests per tenant, per region, as "<n>/<s|min|hour|day>" (docs/api.md, "Rate limits").
# The test profile sets them high so that no other test is throttled; tests of the limits
# lower them for themselves.
_RATE_DEFAULTS = {"read": "600/min", "write": "120/min", "probe": "10/min"}
if FERRY_PROFILE == "test":
    _RATE_DEFAULTS = {"read": "100000/min", "write": "100000/min", "probe": "100000/min"}
FERRY_RATE_LIMIT_READ = env.str("FERRY_RATE_LIMIT_READ", default=_RATE_DEFAULTS["read"])
FERRY_RATE_LIMIT_WRITE = env.str("FERRY_RATE_LIMIT_WRITE", default=_RATE_DEFAULTS["write"])
# Connection tests and host-key scans: each opens an outbound connection.
FERRY_RATE_LIMIT_PROBE = env.str("FERRY_RATE_LIMIT_PROBE", default=_RATE_DEFAULTS["probe"])
for _name in ("FERRY_RATE_LIMIT_READ", "FERRY_RATE_LIMIT_WRITE", "FERRY_RATE_LIMIT_PROBE"):
    # Refused at start-up: a rate the throttle cannot read would fail every request.
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", globals()[_name]):
        raise environ.ImproperlyConfigured(f"{_name} is '<requests>/<s|min|hour|day>', such as 600/min")
# The counters' store: the region's Redis (ElastiCache on AWS), shared by the region's API
# tasks. The test profile uses the machine's Redis; without one (make run: one API process)
# they are kept in the process.
FERRY_RATE_LIMIT_REDIS_URL = env.str(
    "FERRY_RATE_LIMIT_REDIS_URL", default="redis://127.0.0.1:6379/0" if FERRY_PROFILE == "test" else ""
)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": FERRY_RATE_LIMIT_REDIS_URL,
            "KEY_PREFIX": "ferry",
            # A slow store must not hold requests up: fail fast, and let the request through.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if FERRY_RATE_LIMIT_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ferry-ratelimit"}
    ),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ferry API",
    "DESCRIPTION": "Managed file transfer between SFTP servers and S3 buckets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Errors by rule on every operation (controlplane/schema.py), after the enum naming.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.schema.add_error_responses",
    ],
    "COMPONENT_SPLIT_PATCH": True,
    # Each endpoint shape's one-value kind (the discriminator) gets a stable name.
    "ENUM_NAME_OVERRIDES": {
        "SftpKindEnum": ["sftp"],
        "S3KindEnum": ["s3"],
        # Two "state" fields: a transfer's (its name as before) and an endpoint's breaker's.
        "StateEnum": "transfers.states.State",
        "CircuitStateEnum": ["closed", "open", "half_open"],
    },
}

# --- Ferry: regions and AWS -------------------------------------------------------------

FERRY_REGION = env.str("FERRY_REGION", default="us-east-1")
FERRY_REGIONS = env.list("FERRY_REGIONS", default=["us-east-1", "us-west-2"])
# The AWS region this process's clients talk to. On AWS that is its own region (the lease,
# ledger and config tables are global tables with a replica there); locally both simulated
# regions share one emulator, whose resources all live under us-east-1.
FERRY_AWS_REGION = env.str("FERRY_AWS_REGION", default="us-east-1" if _DEV else FERRY_REGION)
FERRY_RESOURCE_PREFIX = env.str("FERRY_RESOURCE_PREFIX", default="ferry")
FERRY_AWS_CONNECT_TIMEOUT = env.float("FERRY_AWS_CONNECT_TIMEOUT", default=5.0)
FERRY_AWS_READ_TIMEOUT = env.float("FERRY_AWS_READ_TIMEOUT", default=30.0)
FERRY_AWS_MAX_ATTEMPTS = env.int("FERRY_AWS_MAX_ATTEMPTS", default=5)
# "path" for S3-compatible servers without virtual-host addressing (the engine's clients).
FERRY_S3_ADDRESSING_STYLE = env.str("FERRY_S3_ADDRESSING_STYLE", default="auto")
FERRY_READY_TIMEOUT = env.float("FERRY_READY_TIMEOUT", default=2.0)
# The emulator accepts what AWS refuses (transactions and TTL on MRSC tables, one region
# touching the other's queues, staging bucket or secrets): with the guard on, Ferry's AWS
# clients and Celery publishing refuse it the way AWS does (controlplane/awsguard/).
FERRY_AWS_GUARD = env.bool("FERRY_AWS_GUARD", default=_DEV)
# Cross-region calls the deployment makes on purpose, as service:Operation:resource
# patterns (fnmatch), e.g. "sqs:SendMessage:ferry-us-west-2-transfers". None today.
FERRY_AWS_GUARD_ALLOW = env.list("FERRY_AWS_GUARD_ALLOW", default=[])

FERRY_KMS_KEY_ALIAS = env.str("FERRY_KMS_KEY_ALIAS", default=f"alias/{FERRY_RESOURCE_PREFIX}")
# Endpoint secrets are replicated to these regions (on AWS: the other active region; the
# creating region itself is skipped). Locally every simulated region gets a replica as on
# AWS: the emulator replicates into its per-region Secrets Manager, and each region's
# processes read their own copy (endpoints/secrets.py).
FERRY_SECRET_REPLICA_REGIONS = env.list("FERRY_SECRET_REPLICA_REGIONS", default=list(FERRY_REGIONS) if _DEV else [])
# The task roles (every region's) that assume customers' roles: the principals of the trust
# policy customers write, shown at GET /api/v1/tenant (docs/endpoints.md, "Roles and the
# external id"); region.yaml sets them. Empty locally: there Ferry acts as the emulator's
# default account.
FERRY_TASK_ROLE_ARNS = [arn for arn in env.list("FERRY_TASK_ROLE_ARNS", default=[]) if arn]
FERRY_STAGING_BUCKET = env.str("FERRY_STAGING_BUCKET", default=f"{FERRY_RESOURCE_PREFIX}-staging-{FERRY_REGION}")
FERRY_TABLE_LEASES = env.str("FERRY_TABLE_LEASES", default=f"{FERRY_RESOURCE_PREFIX}-leases")
FERRY_TABLE_LEDGER = env.str("FERRY_TABLE_LEDGER", default=f"{FERRY_RESOURCE_PREFIX}-ledger")
FERRY_TABLE_CONFIG = env.str("FERRY_TABLE_CONFIG", default=f"{FERRY_RESOURCE_PREFIX}-config")
FERRY_EVENT_BUS = env.str("FERRY_EVENT_BUS", default="default")

# Aurora global database: one region's cluster is the writer; the other region's processes
# use their own cluster's reader endpoint and write through global write forwarding, which
# refuses SAVEPOINT, cursors, LOCK, DDL, nextval() and more (controlplane/dbforwarding.py).
# The writer follows switchovers: region.yaml sets this from its DatabaseWriterRegion.
FERRY_DATABASE_WRITER_REGION = env.str("FERRY_DATABASE_WRITER_REGION", default=FERRY_REGIONS[0])
if FERRY_DATABASE_WRITER_REGION != FERRY_REGION and not _DEV and _db["ENGINE"] != "django.db.backends.sqlite3":
    # A read after this session's own forwarded write must see it (docs/deploy.md, "Write
    # forwarding"). Sent as a startup option: every (re)connection gets it, no extra round
    # trip. Only in production: the local and test profiles' servers are not Aurora.
    _options = _db.setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c apg_write_forward.consistency_mode=session".strip()

# SSRF guard: operators may allow ranges (the tests and the local stack allow loopback).
FERRY_NETGUARD_ALLOW = env.list("FERRY_NETGUARD_ALLOW", default=[])
FERRY_SFTP_ALLOWED_PORTS = env.list("FERRY_SFTP_ALLOWED_PORTS", default=[])

# Timers (seconds). Tests shorten them.
FERRY_CLAIM_TTL = env.float("FERRY_CLAIM_TTL", default=60.0)
FERRY_HEARTBEAT_INTERVAL = env.float("FERRY_HEARTBEAT_INTERVAL", default=15.0)
# Region takeover (docs/regions.md, "Timers and clock skew"): a silent region's partitions
# move at most lease TTL + grace + one keeper interval (22 s) after its last heartbeat; its
# keeper stopped using them TTL/3 (5 s) before they could expire, and the grace adds 5 s
# more for clock skew between regions. The fault test scales these ratios down.
FERRY_TAKEOVER_DEFAULTS = {"FERRY_LEASE_TTL": 15.0, "FERRY_LEASE_GRACE": 5.0, "FERRY_KEEPER_INTERVAL": 2.0}
FERRY_LEASE_TTL = env.float("FERRY_LEASE_TTL", default=FERRY_TAKEOVER_DEFAULTS["FERRY_LEASE_TTL"])
FERRY_LEASE_GRACE = env.float("FERRY_LEASE_GRACE", default=FERRY_TAKEOVER_DEFAULTS["FERRY_LEASE_GRACE"])
FERRY_KEEPER_INTERVAL = env.float("FERRY_KEEPER_INTERVAL", default=FERRY_TAKEOVER_DEFAULTS["FERRY_KEEPER_INTERVAL"])
# Between ticks the keeper sends, this often, the transfers another region created for the
# partitions it holds (workers/dispatch.py, "hand-off"): the owner learns of them within it.
FERRY_HANDOFF_INTERVAL = env.float("FERRY_HANDOFF_INTERVAL", default=0.25)
FERRY_SCHEDULER_INTERVAL = env.float("FERRY_SCHEDULER_INTERVAL", default=30.0)
FERRY_PARTITIONS = env.int("FERRY_PARTITIONS", default=64)
# Who coordinates each transfer's steps (docs/execution.md, "Step Functions"): an AWS Step
# Functions execution per transfer whose tasks the region's step consumer runs
# (``stepfunctions``, the default), or the Celery pipeline and the keeper alone (``celery``,
# for small installs; the test profile's default, so the suite runs both where it asks).
FERRY_ORCHESTRATOR = env.str("FERRY_ORCHESTRATOR", default="celery" if FERRY_PROFILE == "test" else "stepfunctions")
if FERRY_ORCHESTRATOR not in {"stepfunctions", "celery"}:
    raise environ.ImproperlyConfigured(
        f"FERRY_ORCHESTRATOR must be stepfunctions or celery, not {FERRY_ORCHESTRATOR!r}"
    )
# A step task's heartbeat (HeartbeatSeconds, passed in each execution's input): a step whose
# worker stops sending SendTaskHeartbeat for this long times out and runs again.
FERRY_STEP_HEARTBEAT_SECONDS = env.int("FERRY_STEP_HEARTBEAT_SECONDS", default=60)
# A step's overall limit (TimeoutSeconds): longer than the longest copy Ferry allows.
FERRY_STEP_TIMEOUT_SECONDS = env.int("FERRY_STEP_TIMEOUT_SECONDS", default=24 * 3600)
# Steps one ``run_steps`` process runs at once (threads).
FERRY_STEP_CONCURRENCY = env.int("FERRY_STEP_CONCURRENCY", default=4)
# A transfer sent to a queue is not sent again by the keeper's sweep for this long.
FERRY_REDISPATCH_AFTER = env.float("FERRY_REDISPATCH_AFTER", default=60.0)
# Delivery-ledger retention. MRSC tables have no TTL: each region's keeper deletes delivered
# entries of its partitions once older than this (docs/execution.md, "Ledger retention and
# restores"). 35 days is Aurora's longest point-in-time-restore window, so a database
# recovered to any restorable point still finds every delivery since in the ledger. Never
# under 7 days: an S3 event may arrive up to 5 days late (4 days in the events queue after
# EventBridge's 24 h of retries), and its file must still be refused if already delivered.
FERRY_LEDGER_RETENTION_DAYS = env.float("FERRY_LEDGER_RETENTION_DAYS", default=35.0)
if FERRY_LEDGER_RETENTION_DAYS < 7:
    raise environ.ImproperlyConfigured("FERRY_LEDGER_RETENTION_DAYS must be at least 7 (docs/execution.md)")
# The keeper sweeps at most every FERRY_LEDGER_SWEEP_INTERVAL seconds (0: never), deleting at
# most FERRY_LEDGER_SWEEP_BATCH entries a time (about 720,000 a day per region by default).
FERRY_LEDGER_SWEEP_INTERVAL = env.float("FERRY_LEDGER_SWEEP_INTERVAL", default=60.0)
FERRY_LEDGER_SWEEP_BATCH = env.int("FERRY_LEDGER_SWEEP_BATCH", default=500)
# Small files of one route travel together: at most FERRY_BATCH_SIZE per task, each at
# most FERRY_BATCH_MAX_BYTES, FERRY_BATCH_CONCURRENCY in flight over one connection.
FERRY_BATCH_SIZE = env.int("FERRY_BATCH_SIZE", default=32)
FERRY_BATCH_MAX_BYTES = env.int("FERRY_BATCH_MAX_BYTES", default=1024 * 1024)
FERRY_BATCH_CONCURRENCY = env.int("FERRY_BATCH_CONCURRENCY", default=8)
# The execution guard's lease and region reads are shared by a batch's members while at
# most this old (workers.context.batch_guard; the guard is an early exit, not the fence).
FERRY_GUARD_MEMO_SECONDS = env.float("FERRY_GUARD_MEMO_SECONDS", default=2.0)
# Endpoint secret versions read by id are kept this long in a worker's memory
# (endpoints.secrets; a version's value never changes, a rotation records a new id). 0: off.
FERRY_SECRETS_CACHE_SECONDS = env.float("FERRY_SECRETS_CACHE_SECONDS", default=300.0)
# A silent region's partitions are taken over after lease + grace unless this is off.
FERRY_AUTO_TAKEOVER = env.bool("FERRY_AUTO_TAKEOVER", default=True)
# Workers, keepers and consumers serve their Prometheus metrics here (0: off).
FERRY_METRICS_PORT = env.int("FERRY_METRICS_PORT", default=0)
# Retries of failed transfers: exponential backoff with full jitter (transfers/backoff.py).
FERRY_RETRY_BASE_SECONDS = env.float("FERRY_RETRY_BASE_SECONDS", default=10.0)
FERRY_RETRY_CAP_SECONDS = env.float("FERRY_RETRY_CAP_SECONDS", default=900.0)
# The circuit breaker per endpoint (endpoints/breaker.py, docs/endpoints.md): after this
# many consecutive connection failures an endpoint is not dialled for the cool-down (s).
FERRY_BREAKER_THRESHOLD = env.int("FERRY_BREAKER_THRESHOLD", default=5)
FERRY_BREAKER_COOLDOWN = env.float("FERRY_BREAKER_COOLDOWN", default=60.0)
if FERRY_BREAKER_THRESHOLD < 1 or FERRY_BREAKER_COOLDOWN <= 0:
    raise environ.ImproperlyConfigured("FERRY_BREAKER_THRESHOLD must be >= 1 and FERRY_BREAKER_COOLDOWN > 0")
# Fleet-wide connection slots (workers/slots.py, docs/execution.md "Connection slots"): worker
# processes take one of an SFTP endpoint's max_connections slots per connection. A slot not
# renewed (every FERRY_HEARTBEAT_INTERVAL) for FERRY_SLOT_TTL s is free again (its holder
# died); a connection waits FERRY_SLOT_WAIT s for a slot, then its transfer waits without
# spending an attempt and is tried again FERRY_SLOT_RETRY s later; an idle pooled connection
# holding a slot closes after FERRY_SLOT_IDLE s.
FERRY_CONNECTION_SLOTS = env.bool("FERRY_CONNECTION_SLOTS", default=True)
FERRY_SLOT_TTL = env.float("FERRY_SLOT_TTL", default=60.0)
FERRY_SLOT_WAIT = env.float("FERRY_SLOT_WAIT", default=2.0)
FERRY_SLOT_RETRY = env.float("FERRY_SLOT_RETRY", default=5.0)
FERRY_SLOT_IDLE = env.float("FERRY_SLOT_IDLE", default=5.0)
if FERRY_SLOT_TTL <= FERRY_HEARTBEAT_INTERVAL:
    raise environ.ImproperlyConfigured("FERRY_SLOT_TTL must be longer than FERRY_HEARTBEAT_INTERVAL")
# How long an ad-hoc transfer's Idempotency-Key is remembered.
FERRY_IDEMPOTENCY_TTL = env.float("FERRY_IDEMPOTENCY_TTL", default=24 * 3600.0)

# Notifications (docs/notifications.md): the dispatcher's loop and claim, webhook retries
# (exponential backoff with jitter for the retry window, then the subscription is disabled;
# also after that many consecutive failed attempts, 0: never) and the bounds of one send.
FERRY_NOTIFY_INTERVAL = env.float("FERRY_NOTIFY_INTERVAL", default=2.0)
FERRY_NOTIFY_CLAIM_TTL = env.float("FERRY_NOTIFY_CLAIM_TTL", default=60.0)
# Finished events (and their delivery logs) are deleted after this many days.
FERRY_NOTIFY_RETENTION_DAYS = env.float("FERRY_NOTIFY_RETENTION_DAYS", default=30.0)
FERRY_WEBHOOK_RETRY_BASE_SECONDS = env.float("FERRY_WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
FERRY_WEBHOOK_RETRY_CAP_SECONDS = env.float("FERRY_WEBHOOK_RETRY_CAP_SECONDS", default=3600.0)
FERRY_WEBHOOK_RETRY_WINDOW_SECONDS = env.float("FERRY_WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600.0)
FERRY_WEBHOOK_DISABLE_AFTER_FAILURES = env.int("FERRY_WEBHOOK_DISABLE_AFTER_FAILURES", default=500)
FERRY_WEBHOOK_CONNECT_TIMEOUT = env.float("FERRY_WEBHOOK_CONNECT_TIMEOUT", default=5.0)
FERRY_WEBHOOK_READ_TIMEOUT = env.float("FERRY_WEBHOOK_READ_TIMEOUT", default=10.0)
FERRY_WEBHOOK_MAX_RESPONSE_BYTES = env.int("FERRY_WEBHOOK_MAX_RESPONSE_BYTES", default=64 * 1024)
# CA certificates webhook receivers are verified against ("": the system's). The test
# profile points it at the test receiver's own CA.
FERRY_WEBHOOK_CA_BUNDLE = env.str("FERRY_WEBHOOK_CA_BUNDLE", default="")
# Ferry's own EventBridge bus of this region: every event is put on it.
FERRY_NOTIFICATION_BUS = env.str(
    "FERRY_NOTIFICATION_BUS", default=f"{FERRY_RESOURCE_PREFIX}-{FERRY_REGION}-notifications"
)

# API keys (docs/identity.md). A key issued without an expiry expires after
# FERRY_API_KEY_MAX_DAYS (0: no maximum, keys may live for ever); one asked for with a later
# expiry is refused. Listings flag keys that expire within FERRY_API_KEY_EXPIRING_SOON_DAYS.
FERRY_API_KEY_MAX_DAYS = env.int("FERRY_API_KEY_MAX_DAYS", default=365)
if not 0 <= FERRY_API_KEY_MAX_DAYS <= 36500:
    raise environ.ImproperlyConfigured("FERRY_API_KEY_MAX_DAYS must be 0 (no maximum) to 36500 (100 years)")
FERRY_API_KEY_EXPIRING_SOON_DAYS = env.int("FERRY_API_KEY_EXPIRING_SOON_DAYS", default=14)

# The addresses Ferry connects from, per region, published at GET /api/v1/network for
# customers' allowlists: "us-east-1=203.0.113.10,203.0.113.11;us-west-2=…". region.yaml
# sets it from the NAT gateways' EIPs of both regions (the peer's by parameter).
FERRY_EGRESS_ADDRESSES = egress.parse(env.str("FERRY_EGRESS_ADDRESSES", default=""))

# --- OAuth2 client credentials (docs/identity.md) ----------------------------------------

# django-oauth-toolkit serves /oauth/token; clients are registered through the API
# (controlplane/oauth.py). Tokens are short-lived and carry the scope read or write. The
# RFC 9700 flags: tokens stored as SHA-256 only, and every other grant's weak form refused.
FERRY_OAUTH_TOKEN_SECONDS = env.int("FERRY_OAUTH_TOKEN_SECONDS", default=3600)
if not 60 <= FERRY_OAUTH_TOKEN_SECONDS <= 86400:
    raise environ.ImproperlyConfigured("FERRY_OAUTH_TOKEN_SECONDS must be 60 to 86400")
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read the tenant's objects", "write": "Read and change the tenant's objects"},
    "DEFAULT_SCOPES": ["read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": FERRY_OAUTH_TOKEN_SECONDS,
    "OAUTH2_VALIDATOR_CLASS": "controlplane.oauth.FerryOAuth2Validator",
    # Client secrets are long and random: one salted PBKDF2 round (controlplane/secrethasher.py).
    "CLIENT_SECRET_HASHER": "ferry_client_secret",
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
}
# Django's hashers for passwords (first: new passwords), then the client secrets' own.
PASSWORD_HASHERS = [*_PASSWORD_HASHERS, "controlplane.secrethasher.ClientSecretHasher"]
# Named so migrations can refer to the (swappable) model; DOT's own, not swapped.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
# How many proxies in front of the API append to X-Forwarded-For (on AWS: 1, the ALB, which
# region.yaml sets). 0: the client's address is REMOTE_ADDR and the header is ignored, since
# anyone can send it (controlplane/clientip.py).
FERRY_TRUSTED_PROXY_HOPS = env.int("FERRY_TRUSTED_PROXY_HOPS", default=0)

# --- Celery over SQS ------------------------------------------------------------------

# With no host in the URL, kombu lets boto3 find the endpoint (AWS_ENDPOINT_URL_SQS or
# AWS_ENDPOINT_URL in the emulator, the regional endpoint on AWS).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="sqs://")
# Seconds a received message stays invisible. The database claim (heartbeat, expiry), not
# SQS, decides who runs a transfer and when a dead worker's transfer runs again, so this
# only needs to outlast most transfers; a copy that outlives it is redelivered, finds the
# claim live and exits. 15 minutes keeps such duplicates rare. Only applied when kombu
# creates a queue; bootstrap_aws creates ours with the same value.
FERRY_SQS_VISIBILITY_TIMEOUT = env.int("FERRY_SQS_VISIBILITY_TIMEOUT", default=900)
FERRY_SQS_WAIT_TIME = env.int("FERRY_SQS_WAIT_TIME", default=10)
FERRY_SQS_POLLING_INTERVAL = env.float("FERRY_SQS_POLLING_INTERVAL", default=0.2)
FERRY_SQS_MAX_RECEIVE_COUNT = env.int("FERRY_SQS_MAX_RECEIVE_COUNT", default=10)

# --- logging ----------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "controlplane.logs.ContextFilter"}},
    "formatters": {"json": {"()": "controlplane.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "asyncssh": {"level": "WARNING"},
        # axes announces its version at every start (each manage.py command); lockouts are WARNING.
        "axes": {"level": "WARNING"},
    },
}
