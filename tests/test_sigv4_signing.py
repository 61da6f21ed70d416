"""Signing keys and their cache (gateway/sigv4/signing.py)."""

from __future__ import annotations

import threading

from gateway.sigv4 import verification
from gateway.sigv4.parsing import parse
from gateway.sigv4.signing import SigningKeyCache, derive_signing_key
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
