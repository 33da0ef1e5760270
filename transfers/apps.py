from django.apps import AppConfig


class TransfersConfig(AppConfig):
    name = "transfers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django loads this module before the models.
        from controlplane import metrics
        from transfers import mirror_docs, selectors, usage

        mirror_docs.register_mirror()
        # Endpoints ask, before a deletion, whether routes or transfers use the endpoint.
        usage.register()
        # /metrics samples transfers by state (one grouped count per scrape).
        metrics.register_sampler("transfers_by_state", selectors.sample_state_metrics)
