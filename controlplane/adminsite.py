"""Ferry's admin site: Django's, plus pages that apps add beside the model pages.

The apps import one way (controlplane <- endpoints <- transfers <- workers), so a page
that reads several apps (the fleet overview reads transfers and the lease table) is
registered by the app on top with :meth:`FerryAdminSite.add_page`, not imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path


@dataclass(frozen=True)
class Page:
    route: str  # relative to /admin/, e.g. "overview/"
    view: Callable[[HttpRequest], HttpResponse]
    name: str  # the URL name, under the admin namespace
    title: str  # the link on the admin's index page


class FerryAdminSite(admin.AdminSite):
    site_header = "Ferry operations"
    site_title = "Ferry"
    # The API's documentation is the site a customer has; "View site" goes there.
    site_url = "/api/docs/"
    index_template = "admin/ferry_index.html"
    login_template = "admin/ferry_login.html"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pages: list[Page] = []
        # Password logins need a TOTP code as well (django-otp; docs/identity.md,
        # "Operators"). Imported here: the form needs the models, loaded after this module.
        from controlplane.operators.mfa import TotpAdminLoginForm

        self.login_form = TotpAdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff who logged in with password and TOTP, or through SSO (the IdP's MFA)."""
        from controlplane.operators import sso

        if not super().has_permission(request):
            return False
        verified = getattr(request.user, "is_verified", None)
        return bool(verified and verified()) or sso.is_sso_session(request)

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        sso_context = {"ferry_sso": settings.FERRY_OIDC_ENABLED, "ferry_sso_failed": "sso" in request.GET}
        return super().login(request, {**(extra_context or {}), **sso_context})

    def add_page(self, page: Page) -> None:
        """Serve ``page.view`` at ``/admin/<route>`` for staff (``admin_view``), linked from the index."""
        self.pages.append(page)

    def get_urls(self) -> list[URLPattern]:
        own = [path(p.route, self.admin_view(p.view), name=p.name) for p in self.pages]
        return [*own, *super().get_urls()]

    def each_context(self, request: HttpRequest) -> dict:
        return {**super().each_context(request), "ferry_pages": self.pages}


class FerryAdminConfig(AdminConfig):
    default_site = "controlplane.adminsite.FerryAdminSite"
