from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "endpoints"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlplane import metrics
        from endpoints import breaker, services

        services.register_mirror()
        # /metrics: how many endpoints' breakers are not closed (one COUNT per scrape).
        metrics.register_sampler("endpoint_circuits", breaker.sample_metrics)
