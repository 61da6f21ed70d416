from __future__ import annotations

import base64
import os
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from audit.models import AuditEvent
from keys import credentials, services
from keys.credentials import SealError, parse_keyring, seal, unseal
from keys.models import AccessKey

from .conftest import new_key

MANY = 2000


def kek_entry(kek_id: str, raw: bytes | None = None) -> str:
    raw = os.urandom(32) if raw is None else raw
    return f"{kek_id}:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_it_makes_well_formed_unique_access_key_ids():
    ids = [credentials.new_access_key_id() for _ in range(MANY)]
    assert all(re.fullmatch(r"^EXC[A-Z2-7]{17}$", key_id) for key_id in ids)
    assert len(set(ids)) == MANY


def test_it_makes_well_formed_unique_secrets():
    secrets = [credentials.new_secret() for _ in range(MANY)]
    assert all(re.fullmatch(r"^[A-Za-z0-9+/]{40}$", secret) for secret in secrets)
    assert len(set(secrets)) == MANY
    # Every character of the alphabet turns up: the secrets use all 64 symbols.
    assert set("".join(secrets)) == set(credentials.SECRET_ALPHABET)


def test_it_stores_no_plaintext_secret(owner):
    key, secret = new_key(owner)
    assert re.fullmatch(r"^[A-Za-z0-9+/]{40}$", secret)
    stored = AccessKey.objects.get(pk=key.pk)
    assert secret.encode() not in bytes(stored.secret_sealed)
    # Nowhere in the key's row or in the audit trail, in any column.
    with connection.cursor() as cursor:
        for table in (AccessKey._meta.db_table, AuditEvent._meta.db_table):
            cursor.execute(f"SELECT * FROM {table}")
            for row in cursor.fetchall():
                for value in row:
                    raw = bytes(value) if isinstance(value, memoryview | bytes) else str(value)
                    needle = secret.encode() if isinstance(raw, bytes) else secret
                    assert needle not in raw
    assert unseal(stored.secret_kek_id, stored.secret_sealed, stored.pk) == secret


def test_it_seals_the_same_secret_differently_each_time():
    secret, key_id = credentials.new_secret(), credentials.new_access_key_id()
    (_, first), (_, second) = seal(secret, key_id), seal(secret, key_id)
    assert first != second
    assert unseal(credentials.keyring().current_id, first, key_id) == secret


def test_it_refuses_to_unseal_under_another_access_key_id():
    secret, key_id = credentials.new_secret(), credentials.new_access_key_id()
    kek_id, sealed = seal(secret, key_id)
    with pytest.raises(SealError):
        unseal(kek_id, sealed, credentials.new_access_key_id())


@pytest.mark.parametrize("position", [0, 5, 12, 30, -1])
def test_it_refuses_to_unseal_a_tampered_blob(position):
    secret, key_id = credentials.new_secret(), credentials.new_access_key_id()
    kek_id, sealed = seal(secret, key_id)
    tampered = bytearray(sealed)
    tampered[position] ^= 0x01
    with pytest.raises(SealError):
        unseal(kek_id, bytes(tampered), key_id)


@pytest.mark.parametrize("length", [0, 5, 12, 27, -1])
def test_it_refuses_to_unseal_a_truncated_blob(length):
    secret, key_id = credentials.new_secret(), credentials.new_access_key_id()
    kek_id, sealed = seal(secret, key_id)
    with pytest.raises(SealError) as refused:
        unseal(kek_id, sealed[:length], key_id)
    # The message names the key whose secret is damaged (and never the secret).
    assert key_id in str(refused.value)
    assert secret not in str(refused.value)


def test_it_refuses_to_unseal_under_an_unknown_kek():
    secret, key_id = credentials.new_secret(), credentials.new_access_key_id()
    _, sealed = seal(secret, key_id)
    with pytest.raises(SealError) as refused:
        unseal("no-such-kek", sealed, key_id)
    assert "'no-such-kek'" in str(refused.value)


def test_it_parses_a_keyring_newest_first():
    first, second = os.urandom(32), os.urandom(32)
    ring = parse_keyring(f" {kek_entry('k2', first)} , {kek_entry('k1', second)},")
    assert ring.current_id == "k2"
    assert ring.get("k2") == first
    assert ring.get("k1") == second
    with pytest.raises(SealError) as refused:
        ring.get("k3")
    assert str(refused.value) == "unknown key-encryption key 'k3'"


def test_it_skips_empty_entries_anywhere_in_a_keyring():
    first, second = os.urandom(32), os.urandom(32)
    ring = parse_keyring(f", ,{kek_entry('k2', first)},,{kek_entry('k1', second)}")
    assert ring.keys == (("k2", first), ("k1", second))


def test_it_reads_a_keyring_entry_with_or_without_its_padding():
    raw = os.urandom(32)
    padded = "k1:" + base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    assert parse_keyring(padded).get("k1") == raw
    assert parse_keyring(padded.rstrip("=")).get("k1") == raw


NO_KEY = "EXCLOUD_SECRET_KEYS holds no key"
NOT_ID_BASE64 = "EXCLOUD_SECRET_KEYS entries must look like ID:BASE64"
NOT_BASE64 = "EXCLOUD_SECRET_KEYS entry 'k1' is not base64"
NOT_32_BYTES = "EXCLOUD_SECRET_KEYS entry 'k1' must be 32 bytes"
ENCODED = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", NO_KEY),
        (" , ,", NO_KEY),
        ("k1", NOT_ID_BASE64),
        ("k1" + base64.urlsafe_b64encode(os.urandom(32)).decode(), NOT_ID_BASE64),
        (":" + base64.urlsafe_b64encode(os.urandom(32)).decode(), NOT_ID_BASE64),
        (kek_entry("bad id"), NOT_ID_BASE64),
        (kek_entry("a" * 17), NOT_ID_BASE64),
        (kek_entry("k1", os.urandom(16)), NOT_32_BYTES),
        (kek_entry("k1", os.urandom(33)), NOT_32_BYTES),
        ("k1:", NOT_32_BYTES),
        ("k1:not base64 at all!", NOT_BASE64),
        ("k1:@@@@", NOT_BASE64),
        # A stray character or padding inside an otherwise good key is refused, not
        # skipped over.
        ("k1:" + ENCODED[:20] + ":" + ENCODED[20:], NOT_BASE64),
        ("k1:" + ENCODED[:20] + " " + ENCODED[20:], NOT_BASE64),
        ("k1:" + ENCODED + "===", NOT_BASE64),
        (kek_entry("k1") + "," + kek_entry("k1"), "EXCLOUD_SECRET_KEYS names 'k1' twice"),
        (kek_entry("k1") + ",garbage", NOT_ID_BASE64),
    ],
)
def test_it_rejects_malformed_keyrings(value, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_keyring(value)
    assert str(refused.value) == message


def test_it_reseals_every_key_under_the_new_kek(owner, member, settings, monkeypatch, capsys):
    # Small batches, so the command has to loop.
    monkeypatch.setattr(services, "RESEAL_BATCH", 2)
    made = [new_key(m, f"key-{i}") for i, m in enumerate([owner, member, owner, member, owner])]
    old_kek = credentials.keyring().current_id
    before = {k.pk: bytes(k.secret_sealed) for k in AccessKey.objects.all()}
    new_kek = "rot" if old_kek != "rot" else "rot2"
    settings.EXCLOUD_SECRET_KEYS = kek_entry(new_kek) + "," + settings.EXCLOUD_SECRET_KEYS

    call_command("rotate_secret_keys")

    assert f"Re-sealed 5 secrets under key-encryption key {new_kek}." in capsys.readouterr().out
    for key, secret in made:
        key.refresh_from_db()
        assert key.secret_kek_id == new_kek
        assert bytes(key.secret_sealed) != before[key.pk]
        assert unseal(new_kek, key.secret_sealed, key.pk) == secret
    events = AuditEvent.objects.filter(action="secret_keys.resealed")
    assert sum(e.details["count"] for e in events) == 5
    assert {(e.target_type, e.target_id) for e in events} == {("key_encryption_key", new_kek)}
    resealed_events = len(events)

    call_command("rotate_secret_keys")
    assert f"Re-sealed 0 secrets under key-encryption key {new_kek}." in capsys.readouterr().out
    assert AuditEvent.objects.filter(action="secret_keys.resealed").count() == resealed_events

    # Once every key is re-sealed, the old KEK can go.
    settings.EXCLOUD_SECRET_KEYS = settings.EXCLOUD_SECRET_KEYS.split(",")[0]
    for key, secret in made:
        key.refresh_from_db()
        assert unseal(key.secret_kek_id, key.secret_sealed, key.pk) == secret


def test_it_does_not_open_a_sealed_secret_copied_onto_another_keys_row(owner):
    from gateway import authority

    first, first_secret = new_key(owner, "first")
    second, _ = new_key(owner, "second")
    AccessKey.objects.filter(pk=second.pk).update(
        secret_kek_id=first.secret_kek_id, secret_sealed=first.secret_sealed
    )
    # The gateway's own read: the copy opens on the row it was sealed for and nowhere else.
    assert authority._load_key(first.pk).secret() == first_secret
    copied = authority._load_key(second.pk)
    assert bytes(copied.sealed) == bytes(first.secret_sealed)
    with pytest.raises(SealError) as caught:
        copied.secret()
    assert second.pk in str(caught.value)
    assert first_secret not in str(caught.value)
