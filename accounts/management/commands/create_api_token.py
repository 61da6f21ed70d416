from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Membership
from accounts.tokens import ApiTokenError, create_api_token
from audit.trail import Actor


class Command(BaseCommand):
    help = (
        "Create an API token for EMAIL in the organisation SLUG, acting with that member's "
        "role, and print only the token."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, metavar="EMAIL")
        parser.add_argument("--org", required=True, metavar="SLUG")
        parser.add_argument("--name", default="cli", help="What the token is for (default: cli)")

    def handle(self, user: str, org: str, name: str, **options) -> None:
        membership = (
            Membership.objects.select_related("org", "user")
            .filter(org__slug=org, user__email__iexact=user)
            .first()
        )
        if membership is None:
            raise CommandError(f"{user} is not a member of an organisation with slug {org!r}.")
        try:
            created = create_api_token(membership, Actor.system("manage.py create_api_token"), name)
        except ApiTokenError as e:
            raise CommandError(str(e)) from None
        # Only the token, so scripts can capture it: TOKEN=$(manage.py create_api_token ...)
        self.stdout.write(created.plaintext)
