from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Ferry control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from controlplane import (
            dbforwarding,
            schema,  # noqa: F401 - registers the OpenAPI auth extension
        )

        # The local and test profiles refuse on a forwarded connection what Aurora's write
        # forwarding refuses on AWS (docs/deploy.md, "Write forwarding").
        connection_created.connect(dbforwarding.on_connection_created, dispatch_uid="ferry-write-forwarding-guard")
