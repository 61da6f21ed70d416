"""Signing keys and their cache (gateway/sigv4/signing.py)."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest

from gateway.sigv4 import signing, verification
from gateway.sigv4.parsing import parse
from gateway.sigv4.signing import SigningKeyCache, derive_signing_key, signature
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    ACCESS_KEY,
    REGION,
    SECRET,
    error_of,
    frozen_botocore_clock,
    independent_signing_key,
    sign,
)


def test_it_derives_the_aws_documented_signing_key():
    # "Derive a signing key" example in the AWS General Reference.
    key = derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam"
    )
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_it_derives_a_signing_key_once_per_key_date_and_region():
    lookups = []

    def secret_for(access_key_id):
        lookups.append(access_key_id)
        return SECRET

    cache_ = SigningKeyCache(maxsize=8)
    get = cache_.provider(secret_for)
    request = sign("GET", "http://s3.example.test:9000/b/k")
    for _ in range(3):
        verification.verify(parse(request, region=REGION), get)
    assert lookups == [ACCESS_KEY]
    assert get(ACCESS_KEY, "20250314", REGION) == independent_signing_key(SECRET, "20250314")
    get(ACCESS_KEY, "20250315", REGION)
    assert lookups == [ACCESS_KEY, ACCESS_KEY]


def test_it_forgets_a_revoked_or_rotated_key_at_once():
    secrets = {ACCESS_KEY: SECRET, "EXCOTHERKEY234567ABC": "o" * 40}
    cache_ = SigningKeyCache()
    get = cache_.provider(secrets.__getitem__)
    request = sign("GET", "http://s3.example.test:9000/b/k")
    verification.verify(parse(request, region=REGION), get)
    get("EXCOTHERKEY234567ABC", "20250314", REGION)
    assert len(cache_) == 2

    secrets[ACCESS_KEY] = "r" * 40  # rotated
    cache_.invalidate(ACCESS_KEY)
    assert cache_.get(ACCESS_KEY, "20250314", REGION) is None
    assert cache_.get("EXCOTHERKEY234567ABC", "20250314", REGION) is not None
    assert error_of(verification.verify, parse(request, region=REGION), get).code == (
        "SignatureDoesNotMatch"
    )


def test_it_does_not_store_a_key_derived_while_it_was_invalidated():
    cache_ = SigningKeyCache()

    def derive_then_get_revoked():
        cache_.invalidate(ACCESS_KEY)  # a revoke lands while the secret is being loaded
        return b"k" * 32

    assert (
        cache_.get_or_derive(ACCESS_KEY, "20250314", REGION, derive_then_get_revoked) == b"k" * 32
    )
    assert cache_.get(ACCESS_KEY, "20250314", REGION) is None


def test_it_evicts_the_least_recently_used_key():
    cache_ = SigningKeyCache(maxsize=2)
    for name in ("a", "b"):
        cache_.get_or_derive(name, "d", "r", lambda name=name: name.encode())
    cache_.get("a", "d", "r")
    cache_.get_or_derive("c", "d", "r", lambda: b"c")
    assert cache_.get("b", "d", "r") is None
    assert (cache_.get("a", "d", "r"), cache_.get("c", "d", "r")) == (b"a", b"c")
    cache_.invalidate("a")
    assert len(cache_) == 1


def test_it_serves_many_threads_consistently():
    cache_ = SigningKeyCache(maxsize=16)
    errors = []

    def work(n):
        try:
            for i in range(300):
                name = f"k{(n + i) % 24}"
                key = cache_.get_or_derive(name, "d", "r", lambda name=name: name.encode())
                assert key == name.encode()
                if i % 50 == 0:
                    cache_.invalidate(name)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache_) <= 16


def test_it_keeps_one_key_in_a_cache_of_one_and_refuses_a_smaller_one():
    cache_ = SigningKeyCache(maxsize=1)
    assert cache_.get_or_derive("a", "d", "r", lambda: b"a") == b"a"
    assert cache_.get("a", "d", "r") == b"a"
    cache_.get_or_derive("b", "d", "r", lambda: b"b")
    assert (cache_.get("a", "d", "r"), cache_.get("b", "d", "r"), len(cache_)) == (None, b"b", 1)
    with pytest.raises(ValueError, match="^maxsize must be at least 1$"):
        SigningKeyCache(maxsize=0)


def test_it_derives_a_key_once_when_asked_directly_twice():
    cache_ = SigningKeyCache()
    derived = []

    def derive():
        derived.append(1)
        return b"k" * 32

    for _ in range(2):
        assert cache_.get_or_derive(ACCESS_KEY, "20250314", REGION, derive) == b"k" * 32
    assert derived == [1]


def test_it_refreshes_a_key_used_through_the_provider():
    keys = {"a": "a" * 40, "b": "b" * 40, "c": "c" * 40}
    cache_ = SigningKeyCache(maxsize=2)
    get = cache_.provider(keys.__getitem__)
    get("a", "20250314", REGION)
    get("b", "20250314", REGION)
    get("a", "20250314", REGION)  # a hit: "a" is now the most recently used
    get("c", "20250314", REGION)
    assert cache_.get("b", "20250314", REGION) is None
    assert cache_.get("a", "20250314", REGION) is not None


def test_it_derives_for_the_service_the_provider_names():
    get = SigningKeyCache().provider(lambda _id: SECRET, service="iam")
    assert get(ACCESS_KEY, "20250314", REGION) == derive_signing_key(
        SECRET, "20250314", REGION, "iam"
    )


def test_it_forgets_every_scope_of_a_key_after_others_were_evicted():
    # Evicting one of a key's scopes must leave the key's other scopes findable, so that
    # revoking the key still drops them; and evicting a key's last scope forgets the key.
    cache_ = SigningKeyCache(maxsize=2)
    cache_.get_or_derive("a", "d1", "r", lambda: b"a1")
    cache_.get_or_derive("a", "d2", "r", lambda: b"a2")
    cache_.get_or_derive("b", "d1", "r", lambda: b"b1")  # evicts a/d1
    cache_.invalidate("a")
    assert cache_.get("a", "d2", "r") is None
    assert cache_.get("b", "d1", "r") == b"b1"
    for n in range(10):
        cache_.get_or_derive(f"k{n}", "d", "r", lambda: b"k")
    assert set(cache_._by_key_id) == {"k8", "k9"}


@pytest.mark.parametrize("drop", ["invalidate", "clear"])
def test_it_does_not_store_a_key_derived_across_a_second_invalidation(drop):
    cache_ = SigningKeyCache()
    cache_.invalidate(ACCESS_KEY) if drop == "invalidate" else cache_.clear()

    def derive_then_drop():
        cache_.invalidate(ACCESS_KEY) if drop == "invalidate" else cache_.clear()
        return b"k" * 32

    cache_.get_or_derive(ACCESS_KEY, "20250314", REGION, derive_then_drop)
    assert cache_.get(ACCESS_KEY, "20250314", REGION) is None


@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 100])
def test_it_signs_as_hmac_sha256_under_a_key_of_any_length(length):
    # Signing keys are 32 bytes, but signature() takes any key: HMAC pads a short key
    # and hashes a key longer than its 64-byte block first.
    key = bytes(range(7, 7 + length))
    text = "AWS4-HMAC-SHA256\n20250314T120000Z\nscope\n" + "ab" * 32
    assert signature(key, text) == hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    assert signature(key, text + "é") == (
        hmac.new(key, (text + "é").encode(), hashlib.sha256).hexdigest()
    )


def test_it_keeps_no_more_pad_states_than_its_bound():
    for n in range(signing._PAD_STATES_MAX + 1):
        signature(n.to_bytes(32, "big"), "text")
        assert len(signing._PAD_STATES) <= signing._PAD_STATES_MAX
