from __future__ import annotations

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the models are loaded.
        from audit import targets
        from audit.models import TargetType

        from .targets import ACCESS_KEYS

        targets.register(TargetType.ACCESS_KEY, ACCESS_KEYS)
