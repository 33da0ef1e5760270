"""The hasher of OAuth client secrets (django-oauth-toolkit's ``CLIENT_SECRET_HASHER``).

Django's default PBKDF2 runs 1,000,000 iterations: right for passwords people choose,
needless for a client secret of 128 random characters from a 62-letter alphabet (about 760
bits: no guess list exists to slow down). On the token endpoint, which anyone can call,
that cost is a lever for a CPU flood (2.8 s per wrong secret measured on the 2-core test
machine under load). One salted iteration keeps the secret unrecoverable from the database,
as the SHA-256 of an API key does (docs/identity.md).
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class ClientSecretHasher(PBKDF2PasswordHasher):
    """PBKDF2-SHA256, salted, one iteration: for long random secrets only, never passwords."""

    algorithm = "ferry_client_secret"
    iterations = 1
