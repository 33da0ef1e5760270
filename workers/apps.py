from django.apps import AppConfig

from controlplane import aws
from engine import config, s3client


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The engine reads no environment: it runs under the settings' AWS policy.
        config.configure(aws.engine_config())
        # The engine builds its own S3 clients; they are guarded like the control plane's
        # (FERRY_AWS_GUARD: another region's staging bucket is refused as AWS would).
        s3client.add_client_hook(aws.guard)
