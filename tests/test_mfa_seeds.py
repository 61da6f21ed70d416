"""TOTP seeds at rest: sealed under the key-encryption keys, bound to their device, and
re-sealed by rotate_secret_keys."""

from __future__ import annotations

import base64
import secrets

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from keys.credentials import SealError, keyring
from mfa import services
from mfa.models import TotpDevice

from .conftest import client_for
from .mfa_support import enrol_totp


def kek_entry(kek_id: str) -> str:
    return f"{kek_id}:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def test_a_seed_copied_onto_another_device_does_not_open(owner, member):
    enrol_totp(client_for(owner))
    enrol_totp(client_for(member))
    mine, theirs = TotpDevice.objects.order_by("pk")
    theirs.seed_kek_id, theirs.seed_sealed = mine.seed_kek_id, mine.seed_sealed
    with pytest.raises(SealError):
        theirs.seed()


def test_it_reseals_every_seed_under_the_new_kek(owner, member, settings, monkeypatch, capsys):
    monkeypatch.setattr(services, "RESEAL_BATCH", 1)
    seeds = [enrol_totp(client_for(m))[0] for m in (owner, member)]
    old_kek = keyring().current_id
    new_kek = "rot" if old_kek != "rot" else "rot2"
    settings.EXCLOUD_SECRET_KEYS = kek_entry(new_kek) + "," + settings.EXCLOUD_SECRET_KEYS

    call_command("rotate_secret_keys")

    assert "Re-sealed 2 TOTP seeds." in capsys.readouterr().out
    devices = list(TotpDevice.objects.order_by("pk"))
    assert [d.seed_kek_id for d in devices] == [new_kek, new_kek]
    events = AuditEvent.objects.filter(action="totp_seeds.resealed")
    assert sum(e.details["count"] for e in events) == 2
    # Once re-sealed, the old KEK can go and the seeds still open.
    settings.EXCLOUD_SECRET_KEYS = settings.EXCLOUD_SECRET_KEYS.split(",")[0]
    assert [d.seed() for d in devices] == seeds
    call_command("rotate_secret_keys")
    assert "TOTP seeds" not in capsys.readouterr().out
