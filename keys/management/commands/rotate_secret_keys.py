from __future__ import annotations

from django.core.management.base import BaseCommand

from audit.trail import Actor
from keys.credentials import keyring
from keys.services import reseal_secrets
from mfa.services import reseal_totp_seeds


class Command(BaseCommand):
    help = (
        "Re-seal every stored access key secret under the newest key-encryption key "
        "(the first in EXCLOUD_SECRET_KEYS), and every TOTP seed of a two-factor device. "
        "Safe to interrupt and re-run."
    )

    def handle(self, **options) -> None:
        actor = Actor.system("manage.py rotate_secret_keys")
        count = reseal_secrets(actor)
        seeds = reseal_totp_seeds(actor)
        self.stdout.write(
            f"Re-sealed {count} secrets under key-encryption key {keyring().current_id}."
        )
        if seeds:
            self.stdout.write(f"Re-sealed {seeds} TOTP seeds.")
