from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Ferry control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlplane import schema  # noqa: F401 - registers the OpenAPI auth extension
