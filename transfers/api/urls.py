from django.urls import path

from transfers.api import views

urlpatterns = [
    path("routes", views.RouteListView.as_view(), name="routes"),
    path("routes/<uuid:route_id>", views.RouteDetailView.as_view(), name="route"),
    path("routes/<uuid:route_id>/run", views.RouteRunView.as_view(), name="route-run"),
    path("routes/<uuid:route_id>/batches", views.RouteBatchListView.as_view(), name="route-batches"),
    path("batches/<uuid:batch_id>", views.BatchDetailView.as_view(), name="batch"),
    path("batches/<uuid:batch_id>/manifest", views.BatchManifestView.as_view(), name="batch-manifest"),
    path("transfers", views.TransferListView.as_view(), name="transfers"),
    path("transfers/<uuid:transfer_id>", views.TransferDetailView.as_view(), name="transfer"),
    path("transfers/<uuid:transfer_id>/redrive", views.TransferRedriveView.as_view(), name="transfer-redrive"),
    path("transfers/<uuid:transfer_id>/cancel", views.TransferCancelView.as_view(), name="transfer-cancel"),
]
