from __future__ import annotations

from django.core.management.base import BaseCommand

from audit.trail import Actor
from keys.credentials import keyring
from keys.services import reseal_secrets


class Command(BaseCommand):
    help = (
        "Re-seal every stored access key secret under the newest key-encryption key "
        "(the first in EXCLOUD_SECRET_KEYS). Safe to interrupt and re-run."
    )

    def handle(self, **options) -> None:
        count = reseal_secrets(Actor.system("manage.py rotate_secret_keys"))
        self.stdout.write(
            f"Re-sealed {count} secrets under key-encryption key {keyring().current_id}."
        )
