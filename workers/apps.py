from celery.signals import worker_process_init, worker_process_shutdown
from django.apps import AppConfig
from django.conf import settings

from controlplane import aws
from engine import config, s3client


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django loads this module before the models, and
        # these import them.
        from controlplane import metrics
        from endpoints import capacity
        from transfers import batches, intake
        from transfers import services as transfer_services
        from workers import dispatch, manifests, orchestrator, samplers, scheduler, slots

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
        # Cancel and re-drive stop the transfer's Step Functions execution too.
        transfer_services.register_execution_stopper(orchestrator.stop_if_enabled)
        # A completed batch whose route asks for a manifest file: written by a worker task.
        batches.register_manifest_dispatcher(manifests.dispatch)
        metrics.register_sampler("leases", samplers.sample_leases)
        metrics.register_sampler("connection_slots", slots.sample_slots)
        capacity.register_slot_counter(slots.count_in_use)
        # Each Celery worker process takes fleet-wide connection slots (workers/slots.py).
        if settings.FERRY_CONNECTION_SLOTS:
            worker_process_init.connect(_install_slots, weak=False)
            worker_process_shutdown.connect(_release_slots, weak=False)


def _install_slots(**_: object) -> None:
    from workers import slots

    slots.install()


def _release_slots(**_: object) -> None:
    from workers import slots

    slots.release_all()
