"""``manage.py adopt_bucket NAME --org SLUG``: hand a bucket the store already holds to an
org. CreateBucket never does this, so buckets brought from elsewhere are assigned here,
on purpose, and audited."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from audit.trail import Actor
from gateway import services


class Command(BaseCommand):
    help = "Assign an existing bucket of the object store to an organisation."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the bucket's name")
        parser.add_argument("--org", required=True, help="the slug of the org to own it")

    def handle(self, *args, name: str, org: str, **options) -> None:
        try:
            organization = Organization.objects.get(slug=org)
        except Organization.DoesNotExist:
            raise CommandError(f"no organisation {org!r}") from None
        try:
            services.adopt_bucket(organization, name, Actor.system("adopt_bucket command"))
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"bucket {name} now belongs to {organization.slug}")
