from __future__ import annotations

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import create_org
from audit.trail import Actor
from excloud_portal.settings import dev_secret

DEMO_EMAIL = "demo@example.com"
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Ensure the demo organisation and its owner exist, and print how to sign in."

    def handle(self, **options) -> None:
        password = dev_secret("demo-password", lambda: secrets.token_urlsafe(12))
        with transaction.atomic():
            user = User.objects.filter(email__iexact=DEMO_EMAIL).first()
            if user is None:
                user = User.objects.create_user(email=DEMO_EMAIL)
            # The password lives in var/demo-password; keep the account in step with it.
            if not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            if not Organization.objects.filter(slug=DEMO_SLUG).exists():
                create_org(user, "Demo", Actor.system("manage.py demo_setup"), slug=DEMO_SLUG)
        self.stdout.write(
            "\n"
            f"  Excloud dashboard: {settings.SITE_URL}/\n"
            f"  Sign in as:        {DEMO_EMAIL}\n"
            f"  Password:          {password}\n"
        )
