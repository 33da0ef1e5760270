"""Seed the local stack: a demo tenant with a write key, an admin user with a TOTP device, a demo bucket."""

import json
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from controlplane import audit, aws, tenancy
from controlplane.models import Tenant
from controlplane.operators import mfa
from controlplane.operators.roles import ADMIN


class Command(BaseCommand):
    help = "Create the demo tenant, its API key, an admin user and a demo bucket; print them as JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", default="demo")
        parser.add_argument("--admin-user", default="admin")
        parser.add_argument("--bucket", default="ferry-demo")

    def handle(self, *args, tenant: str, admin_user: str, bucket: str, **options) -> None:
        with audit.command("seed_demo"), transaction.atomic():
            found = Tenant.objects.filter(name=tenant).first() or tenancy.create_tenant(name=tenant)
            issued = tenancy.issue_api_key(tenant=found, label="make run")
            password = secrets.token_urlsafe(12)
            User = get_user_model()
            user = User.objects.filter(username=admin_user).first() or User(username=admin_user)
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=ADMIN))
            # The admin asks for a TOTP code after the password: the device is kept across
            # runs, so an authenticator app that imported it once keeps working.
            device = mfa.device_of(user) or mfa.enroll(user)
        s3 = aws.client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        self.stdout.write(
            json.dumps(
                {
                    "tenant": found.name,
                    "tenant_id": str(found.id),
                    "api_key": issued.plaintext,
                    "admin_user": admin_user,
                    "admin_password": password,
                    "admin_totp_uri": device.config_url,
                    "bucket": bucket,
                }
            )
        )
