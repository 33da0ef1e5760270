"""A small OpenID Connect provider for tests: discovery, JWKS, authorize, token, userinfo.

It runs in a thread on a free loopback port and signs ID tokens (RS256, PyJWT) for whoever
the test says is logging in (``provider.login_as``). It checks what a real provider checks
that matters here (the client's id and secret, the redirect URI, PKCE S256, one use per
code) and can be told to misbehave: sign with a key that is not in its JWKS, or issue the
token to another audience.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "ferry-admin"
CLIENT_SECRET = "test-oidc-client-secret"
KID = "test-key-1"


@dataclass
class _Grant:
    claims: dict[str, Any]
    nonce: str | None
    challenge: str | None
    redirect_uri: str


@dataclass
class Provider:
    issuer: str = ""
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    # The next login's subject claims; the test sets them (login_as).
    identity: dict[str, Any] = field(default_factory=dict)
    sign_with: Any = None  # another private key: the "wrong signature" case
    audience: str = CLIENT_ID
    grants: dict[str, _Grant] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def login_as(self, sub: str, *, groups: list[str], email: str = "", **claims: Any) -> None:
        self.identity = {"sub": sub, "groups": groups, "email": email or f"{sub}@idp.example", **claims}

    def settings(self) -> dict[str, Any]:
        """Ferry's settings for this provider, read from its discovery document as a deployer would."""
        import requests

        doc = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).json()
        return {
            "FERRY_OIDC_ENABLED": True,
            "FERRY_OIDC_ISSUER": doc["issuer"],
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": doc["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": doc["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": doc["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": doc["jwks_uri"],
            "FERRY_OIDC_ROLE_GROUPS": {"ops-read": "viewer", "ops-run": "operator", "ops-admin": "admin"},
        }

    # --- the endpoints -----------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, b"bad client or response type"
        code = secrets.token_urlsafe(16)
        self.grants[code] = _Grant(
            claims=dict(self.identity),
            nonce=query.get("nonce"),
            challenge=query.get("code_challenge"),
            redirect_uri=query["redirect_uri"],
        )
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        return 302, {"Location": location}, b""

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant"}
        if grant.challenge is not None:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "sub": grant.claims["sub"],
            **({"nonce": grant.nonce} if grant.nonce else {}),
        }
        id_token = jwt.encode(claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": KID})
        access = secrets.token_urlsafe(16)
        self.tokens[access] = grant.claims
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        claims = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        return (200, claims) if claims is not None else (401, {"error": "invalid_token"})


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif url.path == "/jwks":
                self._json(200, provider.jwks())
            elif url.path == "/authorize":
                status, headers, body = provider.authorize(query)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif url.path == "/userinfo":
                self._json(*provider.userinfo(self.headers.get("Authorization", "")))
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlparse(self.path).path == "/token":
                self._json(*provider.token(form))
            else:
                self._json(404, {"error": "not_found"})

    return Handler


class Running:
    def __init__(self) -> None:
        self.provider = Provider()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.provider))
        self.provider.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Provider:
        self.thread.start()
        return self.provider

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
