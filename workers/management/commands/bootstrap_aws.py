import os

from django.core.management.base import BaseCommand, CommandError

from controlplane.bootstrap import bootstrap
from workers.triggers import enable_all_bucket_events


class Command(BaseCommand):
    help = (
        "Create Ferry's queues, tables, buckets, KMS alias and event rules in the AWS "
        "emulator (idempotent). Against AWS (no AWS_ENDPOINT_URL) it only checks them."
    )

    def add_arguments(self, parser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true", help="only report what is missing")
        mode.add_argument("--create", action="store_true", help="create even without an endpoint override")

    def handle(self, *args, check: bool, create: bool, **options) -> None:
        emulated = bool(os.environ.get("AWS_ENDPOINT_URL"))
        do_create = create or (emulated and not check)
        report = bootstrap(create=do_create)
        for name in report.created:
            self.stdout.write(f"created  {name}")
        for name in report.present:
            self.stdout.write(f"present  {name}")
        for name in report.missing:
            self.stdout.write(f"MISSING  {name}")
        if do_create:
            for bucket in enable_all_bucket_events():
                self.stdout.write(f"wired    s3:{bucket} → EventBridge")
        if report.missing:
            raise CommandError(f"{len(report.missing)} resource(s) missing; the infrastructure code creates them")
