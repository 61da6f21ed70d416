"""Bucket records: claimed before CreateBucket reaches the store, given back when it
refuses, adopted only by an operator, and never under a name that breaks S3's rules."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from audit.trail import Actor
from gateway import services
from gateway.models import Bucket
from tests.conftest import audit_mark, events_since, new_key

pytestmark = pytest.mark.django_db


def test_it_claims_a_free_name_once_and_for_one_org(owner, outsider):
    key, _ = new_key(owner)
    theirs, _ = new_key(outsider)
    mark = audit_mark()

    assert services.claim_bucket(key, "photos", Actor.for_access_key(key)) == "claimed"
    assert services.claim_bucket(key, "photos", Actor.for_access_key(key)) == "owned"
    assert services.claim_bucket(theirs, "photos", Actor.for_access_key(theirs)) == "taken"

    assert Bucket.objects.get(name="photos").org == owner.org
    [event] = events_since(mark)
    assert (event.org, event.action, event.target_id) == (owner.org, "bucket.created", "photos")
    assert event.details == {"name": "photos", "access_key": key.id}


@pytest.mark.parametrize("name", ["bravo-data/pwned.txt", "Photos", "ab", "photos.", "10.0.0.1"])
def test_it_never_writes_a_name_that_breaks_the_rules(owner, name):
    key, _ = new_key(owner)
    mark = audit_mark()

    with pytest.raises(services.InvalidBucketName):
        services.claim_bucket(key, name, Actor.for_access_key(key))
    with pytest.raises(services.InvalidBucketName):
        services.adopt_bucket(owner.org, name, Actor.system())
    with pytest.raises(ValidationError):
        Bucket(name=name, org=owner.org).full_clean()

    assert not Bucket.objects.exists()
    assert events_since(mark) == []


def test_it_gives_back_a_claim_the_store_refused_but_only_its_own(owner):
    key, _ = new_key(owner)
    other_key, _ = new_key(owner, "other")
    services.claim_bucket(key, "photos", Actor.for_access_key(key))
    mark = audit_mark()

    assert not services.release_bucket_claim(other_key, "photos", Actor.system(), 500)
    assert services.release_bucket_claim(key, "photos", Actor.for_access_key(key), 503)

    assert not Bucket.objects.exists()
    [event] = events_since(mark)
    assert event.action == "bucket.deleted"
    assert event.details["reason"] == "creation_refused"
    assert event.details["status"] == 503


def test_it_adopts_a_bucket_by_command_and_refuses_to_hand_it_over_twice(owner, outsider):
    mark = audit_mark()

    call_command("adopt_bucket", "legacy-data", "--org", owner.org.slug)

    assert Bucket.objects.get(name="legacy-data").org == owner.org
    [event] = events_since(mark)
    assert (event.org, event.action, event.actor_type) == (owner.org, "bucket.adopted", "system")
    with pytest.raises(CommandError, match="already belongs to acme"):
        call_command("adopt_bucket", "legacy-data", "--org", outsider.org.slug)
    with pytest.raises(CommandError, match="no organisation"):
        call_command("adopt_bucket", "other-data", "--org", "nobody")
    with pytest.raises(CommandError, match="Bucket names"):
        call_command("adopt_bucket", "Legacy_Data", "--org", owner.org.slug)
    assert Bucket.objects.get(name="legacy-data").org == owner.org


def test_the_migration_removes_invalid_names_with_one_event_each_in_their_org(owner, outsider):
    # Rows as the gateway wrote them before names were validated.
    Bucket.objects.bulk_create(
        [
            Bucket(name="bravo-data/pwned.txt", org=owner.org),
            Bucket(name="UPPER", org=owner.org),
            Bucket(name="fine-name", org=owner.org),
            Bucket(name="192.168.1.1", org=outsider.org),
        ]
    )
    mark = audit_mark()
    migration = importlib.import_module("gateway.migrations.0003_bucket_name_rules")

    migration.remove_invalid_buckets(apps, None)

    assert list(Bucket.objects.values_list("name", flat=True)) == ["fine-name"]
    events = events_since(mark)
    assert sorted((e.org.slug, e.action, e.target_id) for e in events) == [
        ("acme", "bucket.deleted", "UPPER"),
        ("acme", "bucket.deleted", "bravo-data/pwned.txt"),
        ("globex", "bucket.deleted", "192.168.1.1"),
    ]
    assert {e.details["reason"] for e in events} == {"invalid_name"}
    migration.remove_invalid_buckets(apps, None)
    assert events_since(mark) == events
