from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django loads this module before the models.
        from notifications import receivers

        # transfers sends its signals inside the transaction of each change; the receivers
        # write the outbox rows in that same transaction (docs/notifications.md).
        receivers.connect()
