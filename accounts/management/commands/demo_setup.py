from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import create_org
from audit.trail import Actor

DEMO_EMAIL = "demo@example.com"
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Ensure the demo organisation and its owner exist, and print how to sign in."

    def handle(self, **options) -> None:
        password = settings.EXCLOUD_DEMO_PASSWORD
        if not password:
            raise CommandError(
                "EXCLOUD_DEMO_PASSWORD is not set: `make run` generates it into var/dev.env"
            )
        with transaction.atomic():
            user = User.objects.filter(email__iexact=DEMO_EMAIL).first()
            if user is None:
                user = User.objects.create_user(email=DEMO_EMAIL)
            # The password lives in var/dev.env; keep the account in step with it.
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
