from django.urls import include, path

from controlplane.api import views

urlpatterns = [
    path("tenant", views.TenantView.as_view(), name="tenant"),
    path("api-keys", views.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<uuid:key_id>", views.ApiKeyDetailView.as_view(), name="api-key"),
    path("api-keys/<uuid:key_id>/rotate", views.ApiKeyRotateView.as_view(), name="api-key-rotate"),
    path("oauth-clients", views.OAuthClientListView.as_view(), name="oauth-clients"),
    path("oauth-clients/<uuid:client_id>", views.OAuthClientDetailView.as_view(), name="oauth-client"),
    path("audit", views.AuditListView.as_view(), name="audit"),
    path("", include("endpoints.api.urls")),
    path("", include("transfers.api.urls")),
    path("", include("notifications.api.urls")),
]
