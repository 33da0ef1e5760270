"""Operators' single sign-on through OpenID Connect (mozilla-django-oidc).

mozilla-django-oidc runs the authorization-code flow (state, nonce, PKCE) and checks the ID
token's signature against the provider's JWKS. Ferry adds what it leaves out or does
differently:

- the ID token's audience must be Ferry's client id, its issuer ``FERRY_OIDC_ISSUER``, and
  it must carry ``exp``, ``iat`` and ``sub``: a token the IdP issued to another application
  is refused (the library skips the audience);
- any refused token or IdP error is a failed login (a redirect to the login page that
  says so), never a 500;
- operators are matched by the IdP's subject (``sub``, username ``sso.<sub>``), not by e-mail: an IdP account that
  shares an e-mail address with a password operator does not become that operator;
- the groups claim decides the roles (``FERRY_OIDC_ROLE_GROUPS``) at every login: someone
  whose groups map to no role is refused, and losing a group at the IdP loses the role at
  the next login. SSO operators have no password, so the password form never admits them.

Endpoints not configured one by one (``FERRY_OIDC_*_ENDPOINT``) are read from the issuer's
discovery document (``<issuer>/.well-known/openid-configuration``) at the first SSO login
of a process and kept; its ``issuer`` must be ``FERRY_OIDC_ISSUER`` exactly.

The IdP is responsible for the second factor of SSO logins (docs/identity.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from controlplane.operators.roles import ROLES

log = logging.getLogger(__name__)

BACKEND = f"{__name__}.FerryOIDCBackend"
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]


# Setting → the discovery document's key.
_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
_discovered: dict[str, dict[str, str]] = {}


class DiscoveryFailed(Exception):
    pass


def endpoint(setting: str) -> str:
    """The IdP endpoint ``setting`` names: the setting when set, else from discovery."""
    configured = getattr(settings, setting, "")
    if configured:
        return configured
    issuer = settings.FERRY_OIDC_ISSUER
    if issuer not in _discovered:
        _discovered[issuer] = discover(issuer)
    return _discovered[issuer][_ENDPOINTS[setting]]


def discover(issuer: str) -> dict[str, str]:
    """The endpoints of ``issuer``'s discovery document (DiscoveryFailed when unusable)."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise DiscoveryFailed(f"{url}: {type(exc).__name__}") from exc
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise DiscoveryFailed(f"{url}: its issuer is not {issuer!r}")
    missing = [key for key in _ENDPOINTS.values() if not isinstance(document.get(key), str)]
    if missing:
        raise DiscoveryFailed(f"{url}: no {', '.join(missing)}")
    return {key: document[key] for key in _ENDPOINTS.values()}


def roles_from_claims(claims: Mapping[str, Any], *, claim: str, mapping: Mapping[str, str]) -> set[str]:
    """The Ferry roles that the IdP groups in ``claims[claim]`` map to (unknown groups ignored)."""
    groups = claims.get(claim) or []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, Iterable):
        return set()
    return {mapping[g] for g in groups if isinstance(g, str) and mapping.get(g) in ROLES}


def username_for(subject: str) -> str:
    """The local username of the IdP subject ``subject``: ``sso.<sub>`` when that is a valid
    Django username (150 characters of letters, digits and ``@.+-_``), else ``sso.<sha256>``."""
    name = f"sso.{subject}"
    if len(name) <= 150 and re.fullmatch(r"[\w.@+-]+", name, re.ASCII):
        return name
    return f"sso.{hashlib.sha256(subject.encode()).hexdigest()}"


def is_sso_session(request: HttpRequest) -> bool:
    """Whether this session's login came through SSO (while SSO is still enabled)."""
    session = getattr(request, "session", None)
    return bool(settings.FERRY_OIDC_ENABLED and session is not None and session.get(BACKEND_SESSION_KEY) == BACKEND)


class FerryOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with Ferry's checks; admits nobody while SSO is off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()
        self.enabled = settings.FERRY_OIDC_ENABLED
        if self.enabled:
            super().__init__(*args, **kwargs)

    def authenticate(self, request, **kwargs):
        if not self.enabled or request is None or not request.GET.get("code"):
            return None  # a password login, or SSO off: nothing to do (and no discovery)
        try:
            self.OIDC_OP_TOKEN_ENDPOINT = endpoint("OIDC_OP_TOKEN_ENDPOINT")
            self.OIDC_OP_USER_ENDPOINT = endpoint("OIDC_OP_USER_ENDPOINT")
            self.OIDC_OP_JWKS_ENDPOINT = endpoint("OIDC_OP_JWKS_ENDPOINT")
            return super().authenticate(request, **kwargs)
        except DiscoveryFailed as exc:
            log.warning("SSO login failed: the identity provider's discovery: %s", exc)
        except (SuspiciousOperation, jwt.PyJWTError, KeyError, ValueError) as exc:
            # A refused token, or a malformed token, JWKS or answer (a JSON error is a ValueError).
            log.warning(
                "SSO login refused: %s", type(exc).__name__ if not isinstance(exc, SuspiciousOperation) else exc
            )
        except requests.RequestException as exc:
            # The message names the IdP's URL and status, never the client secret.
            log.warning("SSO login failed talking to the identity provider: %s", type(exc).__name__)
        return None

    def _verify_jws(self, payload, key):
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation("The ID token's algorithm is not the one configured.")
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.FERRY_OIDC_ISSUER,
                options={"require": _REQUIRED_CLAIMS},
                leeway=30,
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc

    def get_or_create_user(self, access_token, id_token, payload):
        info = self.get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("The userinfo answer is about another subject than the ID token.")
        claims = {**payload, **info}
        roles = roles_from_claims(
            claims, claim=settings.FERRY_OIDC_GROUPS_CLAIM, mapping=settings.FERRY_OIDC_ROLE_GROUPS
        )
        username = username_for(str(payload["sub"]))
        user = self.UserModel.objects.filter(username=username).first()
        if not roles:
            if user is not None and user.is_staff:
                # Removed from Ferry's groups at the IdP: the account keeps its history, not its access.
                user.is_staff = False
                user.save(update_fields=["is_staff"])
                user.groups.clear()
            log.warning("SSO login refused: no Ferry role in the groups of %s", username)
            return None
        if user is None:
            user = self.UserModel(username=username)
            user.set_unusable_password()
        elif not user.is_active:
            log.warning("SSO login refused: %s is deactivated in Ferry", username)
            return None
        user.email = str(claims.get("email") or "")[:254]
        user.first_name = str(claims.get("given_name") or claims.get("name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.is_staff = True
        user.save()
        user.groups.set(Group.objects.filter(name__in=roles))
        log.info("SSO login of %s with roles %s", username, ",".join(sorted(roles)))
        return user


def _only_when_enabled(view_class):
    view = view_class.as_view()

    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.FERRY_OIDC_ENABLED:
            raise Http404("Single sign-on is not configured here.")
        return view(request, *args, **kwargs)

    return guarded


class _RequestView(OIDCAuthenticationRequestView):
    """mozilla-django-oidc's redirect to the IdP, with the endpoint possibly discovered."""

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoint("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except DiscoveryFailed as exc:
            log.warning("SSO login failed: the identity provider's discovery: %s", exc)
            return HttpResponseRedirect(settings.LOGIN_REDIRECT_URL_FAILURE)
        return super().get(request)


login_view = _only_when_enabled(_RequestView)
callback_view = _only_when_enabled(OIDCAuthenticationCallbackView)
