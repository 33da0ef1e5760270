from django.urls import path

from endpoints.api import views

urlpatterns = [
    path("endpoints", views.EndpointListView.as_view(), name="endpoints"),
    path("endpoints/<uuid:endpoint_id>", views.EndpointDetailView.as_view(), name="endpoint"),
    path(
        "endpoints/<uuid:endpoint_id>/credentials", views.EndpointCredentialsView.as_view(), name="endpoint-credentials"
    ),
    path("endpoints/<uuid:endpoint_id>/ssh-key", views.EndpointSshKeyView.as_view(), name="endpoint-ssh-key"),
    path("endpoints/<uuid:endpoint_id>/test", views.EndpointTestView.as_view(), name="endpoint-test"),
    path("network", views.NetworkView.as_view(), name="network"),
    path("host-keys/scan", views.HostKeyScanView.as_view(), name="host-key-scan"),
]
