from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Ferry control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from controlplane import (
            dbforwarding,
            schema,  # noqa: F401 - registers the OpenAPI auth extension
        )
        from controlplane.operators import roles

        # The local and test profiles refuse on a forwarded connection what Aurora's write
        # forwarding refuses on AWS (docs/deploy.md, "Write forwarding").
        connection_created.connect(dbforwarding.on_connection_created, dispatch_uid="ferry-write-forwarding-guard")
        # Operators' roles (viewer, operator, admin) follow the code after every migrate.
        post_migrate.connect(roles.on_post_migrate, dispatch_uid="ferry-operator-roles")
