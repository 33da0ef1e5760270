from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from oauth2_provider.views import TokenView

from controlplane import health
from controlplane.operators import sso

handler400 = "controlplane.errors.handler400"
handler403 = "controlplane.errors.handler403"
handler404 = "controlplane.errors.handler404"
handler500 = "controlplane.errors.handler500"

api_v1 = [
    path("", include("controlplane.api.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="ferry/redoc.html"),
        name="api-redoc",
    ),
    path("api/v1/", include(api_v1)),
    # OAuth2 token endpoint only (client credentials; docs/identity.md): no authorize page.
    path("oauth/token", TokenView.as_view(), name="oauth-token"),
    # Operators' SSO (404 unless FERRY_OIDC_ENABLED); under /admin/ so it shares the admin's
    # host guard and the internal listener. The names are mozilla-django-oidc's.
    path("admin/sso/login/", sso.login_view, name="oidc_authentication_init"),
    path("admin/sso/callback/", sso.callback_view, name="oidc_authentication_callback"),
    path("admin/", admin.site.urls),
]
