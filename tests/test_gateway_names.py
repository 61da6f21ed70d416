from __future__ import annotations

import pytest

from gateway.names import (
    bucket_name_problem,
    check_bucket_name,
    check_list_prefix,
    check_object_name,
    decode_object_name,
)
from gateway.sigv4 import S3Error

VALID_BUCKET_NAMES = [
    "abc",
    "a.b-c",
    "a" * 63,
    "0-9",
    "my.bucket.example",
    "1.2.3.4a",
    "s3alias-first",
]

INVALID_BUCKET_NAMES = [
    "ab",
    "a" * 64,
    "",
    "Abc",
    "ABC",
    "a_b",
    "abc.",
    "abc-",
    ".abc",
    "-abc",
    "a..b",
    "192.168.5.4",
    "999.999.999.999",
    "xn--abc",
    "sthree-abc",
    "amzn-s3-demo-abc",
    "abc-s3alias",
    "abc--ol-s3",
    "abc.mrap",
    "abc--x-s3",
    "abc--table-s3",
    "a%2Fb",
    "a/b",
    "a b",
    "bücket",
    # An Arabic-Indic digit: \d would match it, the rule's [0-9] must not.
    "abc\u0661",
    "abc\n",
]


@pytest.mark.parametrize("name", VALID_BUCKET_NAMES)
def test_it_accepts_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None
    assert check_bucket_name(name) == name


@pytest.mark.parametrize("name", INVALID_BUCKET_NAMES)
def test_it_refuses_invalid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is not None
    with pytest.raises(S3Error) as caught:
        check_bucket_name(name)
    assert caught.value.code == "InvalidBucketName"
    assert caught.value.status == 400


def test_it_names_the_refused_bucket_in_the_error() -> None:
    with pytest.raises(S3Error) as caught:
        check_bucket_name("Bad_Name")
    assert caught.value.extra == {"BucketName": "Bad_Name"}


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "a/b/c.txt",
        ".hidden",
        "a/.b/..c/...",
        "a b+c%d",
        "ü/ß",
        "a" * 1024,
        # 512 two-byte characters: 1,024 bytes, the most S3 allows.
        "é" * 512,
    ],
)
def test_it_accepts_usable_object_names(name: str) -> None:
    assert check_object_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a\x00b",
        ".",
        "..",
        "./a",
        "../a",
        "a/.",
        "a/..",
        "a/./b",
        "a/../b",
        "a//b",
        "/a",
        "//",
        "a/./",
        "a//",
        "dir/",
        "dir/sub/",
    ],
)
def test_it_refuses_object_names_a_store_could_resolve_elsewhere(name: str) -> None:
    with pytest.raises(S3Error) as caught:
        check_object_name(name)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)


@pytest.mark.parametrize("name", ["a" * 1025, "é" * 512 + "a", "€" * 342])
def test_it_refuses_object_names_over_1024_bytes(name: str) -> None:
    with pytest.raises(S3Error) as caught:
        check_object_name(name)
    assert (caught.value.code, caught.value.status) == ("KeyTooLongError", 400)


def test_it_refuses_object_names_that_are_not_utf8() -> None:
    with pytest.raises(S3Error) as caught:
        check_object_name("a\ud800b")
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("a.txt", "a.txt"),
        ("a%20b", "a b"),
        ("a+b", "a+b"),
        ("a%2Bb", "a+b"),
        ("a%2Fb", "a/b"),
        ("a%2fb", "a/b"),
        ("%C3%BC", "ü"),
        ("%c3%bc", "ü"),
        ("a%25b", "a%b"),
    ],
)
def test_it_decodes_object_names(raw: str, name: str) -> None:
    assert decode_object_name(raw) == name


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("%zz", "InvalidURI"),
        ("a%", "InvalidURI"),
        ("a%4", "InvalidURI"),
        ("a%g0", "InvalidURI"),
        ("%C3%28", "InvalidArgument"),
        ("%FF", "InvalidArgument"),
        ("%C0%AE", "InvalidArgument"),
        ("%ED%A0%80", "InvalidArgument"),
        ("a%00b", "InvalidArgument"),
        ("%2E%2E", "InvalidArgument"),
        ("a/%2e/b", "InvalidArgument"),
        ("a%2F%2Fb", "InvalidArgument"),
        ("%2Fa", "InvalidArgument"),
        ("a" * 1025, "KeyTooLongError"),
        ("%C3%A9" * 512 + "a", "KeyTooLongError"),
    ],
)
def test_it_refuses_bad_encoded_object_names(raw: str, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        decode_object_name(raw)
    assert (caught.value.code, caught.value.status) == (code, 400)


def test_it_counts_the_length_of_the_decoded_name() -> None:
    # 1,024 escapes of one byte each: 3,072 characters on the wire, 1,024 bytes of name.
    assert decode_object_name("%41" * 1024) == "A" * 1024


@pytest.mark.parametrize(
    "prefix", ["", "team/", "team", "team/..c", "team/.hidden/", "a/...", "a b+c%d", "a//"]
)
def test_it_accepts_listing_prefixes_that_name_no_other_folder(prefix: str) -> None:
    assert check_list_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["..", ".", "../", "./a", "team/..", "team/../", "team/../secret/", "a/./b", "a\x00"]
)
def test_it_refuses_listing_prefixes_a_store_could_resolve_elsewhere(prefix: str) -> None:
    with pytest.raises(S3Error) as caught:
        check_list_prefix(prefix)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
