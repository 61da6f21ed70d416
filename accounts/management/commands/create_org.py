from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email, validate_slug
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import create_org
from audit.trail import Actor
from excloud_portal.text import UnsafeText, check_text


class Command(BaseCommand):
    help = (
        "Create an organisation owned by EMAIL, creating that user (with no password anyone "
        "knows) if missing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, metavar="EMAIL")
        parser.add_argument("--name", help="Display name (defaults to the slug)")

    def handle(self, slug: str, owner: str, name: str | None, **options) -> None:
        try:
            validate_slug(slug)
            validate_email(owner)
            check_text(name or slug, "Organisation names")
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None
        except UnsafeText as e:
            raise CommandError(str(e)) from None
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"An organisation with slug {slug!r} already exists.")
        with transaction.atomic():
            user = User.objects.filter(email__iexact=owner).first()
            new_user = user is None
            if new_user:
                # A random password nobody knows, not an unusable one: Django's password
                # reset refuses accounts with an unusable password, and the reset page is
                # how the new owner chooses theirs.
                user = User.objects.create_user(email=owner, password=secrets.token_urlsafe(32))
            org = create_org(user, name or slug, Actor.system("manage.py create_org"), slug=slug)
        self.stdout.write(f"Created organisation {org.slug} owned by {user.email}.")
        if new_user:
            self.stdout.write(
                f"{user.email} has no password yet: set one with "
                f"`python manage.py changepassword {user.email}` or the password reset page."
            )
