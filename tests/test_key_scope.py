"""A key's scope (keys/scope.py) and the services that set it: created with the key,
narrowed, never widened, carried over by rotation, audited each time."""

from __future__ import annotations

import ipaddress
import json

import pytest
from django.core.exceptions import PermissionDenied

from audit.trail import Actor
from keys.models import AccessKey, CacheChange, CachedKind
from keys.scope import (
    ACCESS_ADMIN,
    ACCESS_READ,
    ACCESS_WRITE,
    ADMIN,
    DEFAULT_SCOPE,
    READ_ONLY,
    READ_WRITE,
    BucketGrant,
    Scope,
    ScopeError,
)
from keys.services import (
    InvalidKeyState,
    ScopeWidened,
    create_key,
    narrow_key_scope,
    revoke_key,
    rotate_key,
)

from .conftest import audit_mark, events_since, new_key

READ_LOGS = Scope.build(permission=READ_ONLY, buckets=[("logs", "app/")], networks=["10.0.0.0/8"])


# -- the scope itself ------------------------------------------------------------------


def test_the_default_scope_is_what_every_key_had_before_and_stores_as_nothing():
    assert Scope.from_json({}) == Scope.from_json(None) == DEFAULT_SCOPE
    assert DEFAULT_SCOPE.to_json() == {}
    assert DEFAULT_SCOPE.is_default
    assert all(DEFAULT_SCOPE.allows_access(a) for a in (ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN))
    assert DEFAULT_SCOPE.sees_bucket("any-bucket")
    assert DEFAULT_SCOPE.covers_object("any-bucket", "any/key")
    assert DEFAULT_SCOPE.allows_address("203.0.113.9") and DEFAULT_SCOPE.allows_address(None)
    assert DEFAULT_SCOPE.as_api() == {"permission": ADMIN, "buckets": None, "networks": []}


def test_it_round_trips_through_its_stored_form():
    stored = json.loads(json.dumps(READ_LOGS.to_json()))
    assert stored == {
        "permission": READ_ONLY,
        "buckets": [{"name": "logs", "prefix": "app/"}],
        "networks": ["10.0.0.0/8"],
    }
    assert Scope.from_json(stored) == READ_LOGS


@pytest.mark.parametrize(
    ("permission", "allowed"),
    [
        (READ_ONLY, {ACCESS_READ}),
        (READ_WRITE, {ACCESS_READ, ACCESS_WRITE}),
        (ADMIN, {ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN}),
    ],
)
def test_each_permission_allows_exactly_its_accesses(permission, allowed):
    scope = Scope(permission)
    for access in (ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN, "unknown"):
        assert scope.allows_access(access) is (access in allowed), access


def test_buckets_and_prefixes_bound_what_it_touches():
    scope = Scope.build(buckets=["photos", {"name": "logs", "prefix": "app/"}])
    assert scope.sees_bucket("photos") and scope.sees_bucket("logs")
    assert not scope.sees_bucket("other")
    assert scope.covers_object("photos", "anything")
    assert scope.covers_object("logs", "app/2026/x.log")
    assert not scope.covers_object("logs", "ap")
    assert not scope.covers_object("logs", "other/app/x")
    assert not scope.covers_object("other", "app/x")
    assert scope.covers_whole_bucket("photos") and not scope.covers_whole_bucket("logs")
    # Listing is allowed when every name it can return lies inside the grant.
    assert scope.covers_prefix("logs", "app/")
    assert scope.covers_prefix("logs", "app/2026/")
    assert not scope.covers_prefix("logs", "")
    assert not scope.covers_prefix("logs", "ap")
    assert scope.covers_prefix("photos", "")


def test_source_addresses_are_matched_by_network_and_version():
    scope = Scope.build(networks=["203.0.113.0/24", "2001:db8::/32"])
    assert scope.allows_address("203.0.113.200")
    assert not scope.allows_address("203.0.114.1")
    assert scope.allows_address("2001:db8::1")
    assert not scope.allows_address("2001:db9::1")
    # An IPv4 client seen on a dual-stack socket.
    assert scope.allows_address("::ffff:203.0.113.5")
    assert not scope.allows_address(None)
    assert not scope.allows_address("")
    assert not scope.allows_address("not-an-address")
    single = Scope.build(networks=["198.51.100.7"])
    assert single.networks == (ipaddress.ip_network("198.51.100.7/32"),)
    assert single.allows_address("198.51.100.7") and not single.allows_address("198.51.100.8")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"permission": "write"}, "Choose a permission"),
        ({"buckets": []}, "at least one bucket"),
        ({"buckets": ["Bad_Name"]}, "is not a bucket name"),
        ({"buckets": ["a..b"]}, "is not a bucket name"),
        ({"buckets": ["logs", ("logs", "x/")]}, "each bucket once"),
        ({"buckets": [{"name": "logs", "prefx": "x"}]}, '"name"'),
        ({"buckets": [("logs", "a\nb")]}, "control characters"),
        ({"buckets": [("logs", "x" * 1025)]}, "at most 1024 bytes"),
        ({"networks": ["10.1.2.3/8"]}, "is not an IP address or network"),
        ({"networks": ["example.com"]}, "is not an IP address or network"),
        ({"buckets": [f"bucket-{n:03}" for n in range(101)]}, "at most 100 buckets"),
        ({"networks": [f"10.0.{n}.0/24" for n in range(51)]}, "at most 50 networks"),
    ],
)
def test_bad_scopes_are_refused_with_a_reason(kwargs, words):
    with pytest.raises(ScopeError, match=words):
        Scope.build(**kwargs)


@pytest.mark.parametrize(
    ("narrower", "wider", "within"),
    [
        (Scope(READ_ONLY), DEFAULT_SCOPE, True),
        (DEFAULT_SCOPE, Scope(READ_WRITE), False),
        (Scope.build(buckets=["logs"]), DEFAULT_SCOPE, True),
        (DEFAULT_SCOPE, Scope.build(buckets=["logs"]), False),
        (Scope.build(buckets=[("logs", "app/x/")]), Scope.build(buckets=[("logs", "app/")]), True),
        (Scope.build(buckets=[("logs", "ap")]), Scope.build(buckets=[("logs", "app/")]), False),
        (Scope.build(buckets=["logs"]), Scope.build(buckets=[("logs", "app/")]), False),
        (Scope.build(buckets=["logs", "more"]), Scope.build(buckets=["logs"]), False),
        (Scope.build(networks=["10.1.0.0/16"]), Scope.build(networks=["10.0.0.0/8"]), True),
        (Scope.build(networks=["10.0.0.0/7"]), Scope.build(networks=["10.0.0.0/8"]), False),
        (DEFAULT_SCOPE, Scope.build(networks=["10.0.0.0/8"]), False),
        (Scope.build(networks=["2001:db8::/48"]), Scope.build(networks=["10.0.0.0/8"]), False),
        (READ_LOGS, READ_LOGS, True),
    ],
)
def test_within_says_whether_a_scope_allows_nothing_more(narrower, wider, within):
    assert narrower.within(wider) is within


def test_it_says_what_the_key_may_do_in_one_line():
    assert DEFAULT_SCOPE.describe() == "admin on all of the organisation's buckets"
    assert READ_LOGS.describe() == "read-only on logs/app/*, from 10.0.0.0/8"
    assert BucketGrant("photos").describe() == "photos"


# -- the services ----------------------------------------------------------------------


def test_a_key_is_created_with_its_scope_and_the_event_says_so(owner):
    mark = audit_mark()
    created = create_key(owner, Actor.for_user(owner.user), "reader", scope=READ_LOGS)
    key = AccessKey.objects.get(pk=created.key.pk)
    assert key.key_scope == READ_LOGS
    [event] = events_since(mark)
    assert event.details["scope"] == READ_LOGS.as_api()


def test_a_key_made_without_a_scope_has_the_default_one_in_its_event(owner):
    mark = audit_mark()
    key, _ = new_key(owner, "full")
    assert AccessKey.objects.get(pk=key.pk).scope == {}
    [event] = events_since(mark)
    assert event.details["scope"] == {"permission": ADMIN, "buckets": None, "networks": []}


def test_narrowing_is_stored_audited_and_announced_to_every_gateway(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    changes = CacheChange.objects.count()
    narrow_key_scope(owner, Actor.for_user(owner.user), key, READ_LOGS)
    assert AccessKey.objects.get(pk=key.pk).key_scope == READ_LOGS
    [event] = events_since(mark)
    assert event.action == "access_key.scope_narrowed"
    assert event.details == {
        "name": "laptop",
        "from": DEFAULT_SCOPE.as_api(),
        "to": READ_LOGS.as_api(),
    }
    assert list(CacheChange.objects.order_by("id")[changes:].values_list("kind", "name")) == [
        (CachedKind.KEY, key.pk)
    ]


def test_widening_is_refused_and_changes_nothing(owner):
    created = create_key(owner, Actor.for_user(owner.user), "reader", scope=READ_LOGS)
    mark = audit_mark()
    for wider in (
        DEFAULT_SCOPE,
        Scope.build(permission=READ_WRITE, buckets=[("logs", "app/")], networks=["10.0.0.0/8"]),
        Scope.build(permission=READ_ONLY, buckets=[("logs", "")], networks=["10.0.0.0/8"]),
        Scope.build(permission=READ_ONLY, buckets=[("logs", "app/")]),
    ):
        with pytest.raises(ScopeWidened, match="can only be narrowed"):
            narrow_key_scope(owner, Actor.for_user(owner.user), created.key, wider)
    assert AccessKey.objects.get(pk=created.key.pk).key_scope == READ_LOGS
    assert events_since(mark) == []


def test_the_same_scope_again_records_nothing(owner):
    created = create_key(owner, Actor.for_user(owner.user), "reader", scope=READ_LOGS)
    mark = audit_mark()
    narrow_key_scope(owner, Actor.for_user(owner.user), created.key, READ_LOGS)
    assert events_since(mark) == []


def test_only_those_who_may_change_the_key_may_narrow_it(owner, member, auditor):
    key, _ = new_key(owner, "laptop")
    for who in (member, auditor):
        with pytest.raises(PermissionDenied):
            narrow_key_scope(who, Actor.for_user(who.user), key, READ_LOGS)
    own, _ = new_key(member, "mine")
    narrow_key_scope(member, Actor.for_user(member.user), own, READ_LOGS)
    assert AccessKey.objects.get(pk=own.pk).key_scope == READ_LOGS


def test_a_revoked_key_keeps_its_scope(owner):
    key, _ = new_key(owner, "laptop")
    revoke_key(owner, Actor.for_user(owner.user), key)
    with pytest.raises(InvalidKeyState):
        narrow_key_scope(owner, Actor.for_user(owner.user), key, READ_LOGS)


def test_a_rotated_key_passes_its_scope_to_its_replacement(owner):
    created = create_key(owner, Actor.for_user(owner.user), "reader", scope=READ_LOGS)
    replacement = rotate_key(owner, Actor.for_user(owner.user), created.key)
    assert AccessKey.objects.get(pk=replacement.key.pk).key_scope == READ_LOGS


def test_the_audit_page_says_what_a_scope_allows_in_words(owner):
    from .conftest import client_for

    created = create_key(owner, Actor.for_user(owner.user), "reader", scope=Scope(READ_WRITE))
    narrow_key_scope(owner, Actor.for_user(owner.user), created.key, READ_LOGS)
    page = client_for(owner).get(f"/orgs/{owner.org.slug}/audit/").content.decode()
    assert (
        "from: read-write on all of the organisation&#x27;s buckets · name: reader · "
        "to: read-only on logs/app/*, from 10.0.0.0/8"
    ) in page
    assert "scope: read-write on all of the organisation&#x27;s buckets" in page
    assert "&#x27;permission&#x27;" not in page
