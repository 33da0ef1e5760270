from django.apps import AppConfig


class TransfersConfig(AppConfig):
    name = "transfers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django loads this module before the models.
        from controlplane import metrics, scoping
        from endpoints import breaker
        from transfers import lifecycle, mirror_docs, selectors, usage

        mirror_docs.register_mirror()
        # Endpoints ask, before a deletion, whether routes or transfers use the endpoint.
        usage.register()
        # An endpoint's breaker closed: the transfers waiting for it are due at once.
        breaker.register_on_closed(lifecycle.circuit_closed)
        # /metrics samples transfers by state (one grouped count per scrape).
        metrics.register_sampler("transfers_by_state", selectors.sample_state_metrics)
        # Keys restricted to some endpoints and routes see only their transfers.
        scoping.register_object_check("transfer_id", selectors.transfer_visible)
