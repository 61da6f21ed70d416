"""S3's rules for bucket and object names, checked before anything is decided about them.

Django-free. A bucket name that breaks the rules is refused, never repaired: the gateway
decides on the name it validated and forwards that same name, so nothing downstream can
read a different bucket into it. Object names are refused when a store behind the
gateway could resolve them to another object (dot segments, empty segments, a trailing
"/", NUL), and listing prefixes when it could resolve them to another folder.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from . import s3errors

BUCKET_NAME_MIN_LENGTH = 3
BUCKET_NAME_MAX_LENGTH = 63
OBJECT_NAME_MAX_BYTES = 1024

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]").fullmatch
_IPV4_SHAPED = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+").fullmatch
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})").search
# Prefixes and suffixes AWS reserves for its own kinds of bucket and access point.
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name, or None when it is."""
    if not BUCKET_NAME_MIN_LENGTH <= len(name) <= BUCKET_NAME_MAX_LENGTH:
        return "Bucket names are 3 to 63 characters long."
    if not _BUCKET_NAME(name):
        return (
            "Bucket names hold lowercase letters, digits, '.' and '-', and start and end "
            "with a letter or digit."
        )
    if ".." in name:
        return "Bucket names may not hold two adjacent periods."
    if _IPV4_SHAPED(name):
        return "Bucket names may not be formatted as an IP address."
    if name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES):
        return "The bucket name uses a reserved prefix or suffix."
    return None


def check_bucket_name(name: str) -> str:
    """``name`` itself when it is a valid bucket name, or InvalidBucketName."""
    problem = bucket_name_problem(name)
    if problem is not None:
        raise s3errors.invalid_bucket_name(problem, name[: BUCKET_NAME_MAX_LENGTH * 2])
    return name


def object_name_problem(name: str) -> str | None:
    """Why the (decoded) object name cannot be used, or None when it can."""
    if not name:
        return "The object name is empty."
    if "\x00" in name:
        return "Object names may not hold a NUL character."
    # A file-backed store (the embedded one among them) keeps "dir/" as "dir" and "a//b"
    # as "a/b": a name with an empty segment, a trailing "/" included, could be another.
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            return (
                "Object names may not hold empty, '.' or '..' path segments, nor end with "
                "'/': a store could resolve them to another object."
            )
    return None


def check_object_name(name: str) -> str:
    """``name`` itself when it can be used as an object name, or an S3 error."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise s3errors.invalid_argument("Object names must be valid UTF-8.") from None
    if size > OBJECT_NAME_MAX_BYTES:
        raise s3errors.key_too_long()
    problem = object_name_problem(name)
    if problem is not None:
        raise s3errors.invalid_argument(problem)
    return name


def check_list_prefix(prefix: str) -> str:
    """``prefix`` itself when a listing may ask for it, or InvalidArgument. No object name
    holds a "." or ".." segment, so such a prefix lists nothing on a store that compares
    names as strings; a store that resolves paths could list another folder for it."""
    if "\x00" in prefix or any(segment in (".", "..") for segment in prefix.split("/")):
        raise s3errors.invalid_argument(
            "Listing prefixes may not hold a NUL character or '.' or '..' path segments: "
            "a store could resolve them to another folder.",
            "prefix",
        )
    return prefix


def decode_object_name(raw: str) -> str:
    """The object name a raw, percent-encoded path piece stands for, checked."""
    if _BAD_ESCAPE(raw):
        raise s3errors.invalid_uri()
    try:
        name = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise s3errors.invalid_argument("Object names must be valid UTF-8.") from None
    return check_object_name(name)
