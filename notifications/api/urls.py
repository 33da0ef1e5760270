from django.urls import path

from notifications.api import views

urlpatterns = [
    path("subscriptions", views.SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<uuid:subscription_id>", views.SubscriptionDetailView.as_view(), name="subscription"),
    path(
        "subscriptions/<uuid:subscription_id>/rotate-secret",
        views.RotateSecretView.as_view(),
        name="subscription-rotate-secret",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/deliveries",
        views.DeliveryListView.as_view(),
        name="subscription-deliveries",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/deliveries/<uuid:delivery_id>/redeliver",
        views.RedeliverView.as_view(),
        name="subscription-redeliver",
    ),
]
