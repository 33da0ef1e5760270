from django.apps import AppConfig

from controlplane import aws
from engine import config, s3client


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django loads this module before the models, and
        # these import them.
        from controlplane import metrics
        from transfers import batches, intake
        from workers import dispatch, manifests, samplers, scheduler

        # The engine reads no environment: it runs under the settings' AWS policy.
        config.configure(aws.engine_config())
        # The engine builds its own S3 clients; they are guarded like the control plane's
        # (FERRY_AWS_GUARD: another region's staging bucket is refused as AWS would).
        s3client.add_client_hook(aws.guard)
        # The lower apps call up through hooks (imports run one way: controlplane ←
        # endpoints ← transfers ← workers): new transfers are dispatched, manual runs
        # list the source, /metrics samples the leases held.
        intake.register_dispatcher(dispatch.dispatch_transfers)
        intake.register_poller(scheduler.poll_route)
        # A completed batch whose route asks for a manifest file: written by a worker task.
        batches.register_manifest_dispatcher(manifests.dispatch)
        metrics.register_sampler("leases", samplers.sample_leases)
