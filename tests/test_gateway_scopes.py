"""Scoped keys at the S3 endpoint: the embedded store, the gateway under uvicorn, and
botocore-signed requests (boto3, the aws CLI, rclone) with keys whose scope limits their
permission, buckets, object-name prefixes and source addresses (keys/scope.py)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from django.conf import settings

from audit.trail import Actor
from gateway.operations import RULES
from keys.scope import READ_ONLY, READ_WRITE, Scope
from keys.services import create_key, narrow_key_scope
from tests.gateway_stack import RCLONE, gateway
from tests.test_gateway_e2e import _aws, _run_aws

pytestmark = pytest.mark.django_db(transaction=True)

DENIED_MESSAGE = "Access Denied. This access key may do {}."


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


def bucket_name() -> str:
    return "s-" + uuid.uuid4().hex[:16]


def s3_client(endpoint: str, key_id: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            signature_version="s3v4",
        ),
    )


def scoped_key(membership, name: str, **scope) -> tuple[str, str]:
    """(ID, secret) of a key made through the service with ``Scope.build(**scope)``."""
    created = create_key(
        membership, Actor.for_user(membership.user), name, scope=Scope.build(**scope)
    )
    return created.key.id, created.secret


# ---------------------------------------------------------------------------------------
# Every supported operation × every kind of scope


@dataclass(frozen=True)
class Names:
    """What one column's requests name: the org's bucket, an object that exists in it, the
    prefix the requests write under and list, and a bucket no org holds yet."""

    bucket: str
    existing: str
    prefix: str

    def fresh(self) -> str:
        return bucket_name()


def _lifecycle() -> dict:
    return {
        "Rules": [
            {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}
        ]
    }


CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://a.test"]}]}
TAGS = {"TagSet": [{"Key": "k", "Value": "v"}]}
NO_UPLOAD = "no-such-upload"

# Each operation as a client makes it, on the names of one column.
CALLS: dict[str, Callable[..., object]] = {
    "ListBuckets": lambda s3, n: s3.list_buckets(),
    "CreateBucket": lambda s3, n: s3.create_bucket(Bucket=n.fresh()),
    # The bucket holds objects: a store refuses to delete it, after the gateway allowed it.
    "DeleteBucket": lambda s3, n: s3.delete_bucket(Bucket=n.bucket),
    "HeadBucket": lambda s3, n: s3.head_bucket(Bucket=n.bucket),
    "ListObjects": lambda s3, n: s3.list_objects(Bucket=n.bucket, Prefix=n.prefix),
    "ListObjectsV2": lambda s3, n: s3.list_objects_v2(Bucket=n.bucket, Prefix=n.prefix),
    "ListObjectVersions": lambda s3, n: s3.list_object_versions(Bucket=n.bucket, Prefix=n.prefix),
    "ListMultipartUploads": lambda s3, n: s3.list_multipart_uploads(
        Bucket=n.bucket, Prefix=n.prefix
    ),
    "GetBucketLocation": lambda s3, n: s3.get_bucket_location(Bucket=n.bucket),
    "GetBucketAcl": lambda s3, n: s3.get_bucket_acl(Bucket=n.bucket),
    "GetBucketCors": lambda s3, n: s3.get_bucket_cors(Bucket=n.bucket),
    "PutBucketCors": lambda s3, n: s3.put_bucket_cors(Bucket=n.bucket, CORSConfiguration=CORS),
    "DeleteBucketCors": lambda s3, n: s3.delete_bucket_cors(Bucket=n.bucket),
    "GetBucketVersioning": lambda s3, n: s3.get_bucket_versioning(Bucket=n.bucket),
    "PutBucketVersioning": lambda s3, n: s3.put_bucket_versioning(
        Bucket=n.bucket, VersioningConfiguration={"Status": "Suspended"}
    ),
    "GetBucketTagging": lambda s3, n: s3.get_bucket_tagging(Bucket=n.bucket),
    "PutBucketTagging": lambda s3, n: s3.put_bucket_tagging(Bucket=n.bucket, Tagging=TAGS),
    "DeleteBucketTagging": lambda s3, n: s3.delete_bucket_tagging(Bucket=n.bucket),
    "GetBucketLifecycleConfiguration": lambda s3, n: s3.get_bucket_lifecycle_configuration(
        Bucket=n.bucket
    ),
    "PutBucketLifecycleConfiguration": lambda s3, n: s3.put_bucket_lifecycle_configuration(
        Bucket=n.bucket, LifecycleConfiguration=_lifecycle()
    ),
    "DeleteBucketLifecycle": lambda s3, n: s3.delete_bucket_lifecycle(Bucket=n.bucket),
    "DeleteObjects": lambda s3, n: s3.delete_objects(
        Bucket=n.bucket, Delete={"Objects": [{"Key": n.prefix + "gone-1"}]}
    ),
    "GetObject": lambda s3, n: s3.get_object(Bucket=n.bucket, Key=n.existing),
    "HeadObject": lambda s3, n: s3.head_object(Bucket=n.bucket, Key=n.existing),
    "PutObject": lambda s3, n: s3.put_object(Bucket=n.bucket, Key=n.prefix + "put", Body=b"x"),
    "CopyObject": lambda s3, n: s3.copy_object(
        Bucket=n.bucket, Key=n.prefix + "copy", CopySource={"Bucket": n.bucket, "Key": n.existing}
    ),
    "DeleteObject": lambda s3, n: s3.delete_object(Bucket=n.bucket, Key=n.prefix + "gone-2"),
    "CreateMultipartUpload": lambda s3, n: s3.create_multipart_upload(
        Bucket=n.bucket, Key=n.prefix + "multi"
    ),
    "UploadPart": lambda s3, n: s3.upload_part(
        Bucket=n.bucket, Key=n.prefix + "multi", UploadId=NO_UPLOAD, PartNumber=1, Body=b"x"
    ),
    "UploadPartCopy": lambda s3, n: s3.upload_part_copy(
        Bucket=n.bucket,
        Key=n.prefix + "multi",
        UploadId=NO_UPLOAD,
        PartNumber=1,
        CopySource={"Bucket": n.bucket, "Key": n.existing},
    ),
    "CompleteMultipartUpload": lambda s3, n: s3.complete_multipart_upload(
        Bucket=n.bucket,
        Key=n.prefix + "multi",
        UploadId=NO_UPLOAD,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0"'}]},
    ),
    "AbortMultipartUpload": lambda s3, n: s3.abort_multipart_upload(
        Bucket=n.bucket, Key=n.prefix + "multi", UploadId=NO_UPLOAD
    ),
    "ListParts": lambda s3, n: s3.list_parts(
        Bucket=n.bucket, Key=n.prefix + "multi", UploadId=NO_UPLOAD
    ),
    "GetObjectTagging": lambda s3, n: s3.get_object_tagging(Bucket=n.bucket, Key=n.existing),
    "PutObjectTagging": lambda s3, n: s3.put_object_tagging(
        Bucket=n.bucket, Key=n.existing, Tagging=TAGS
    ),
    "DeleteObjectTagging": lambda s3, n: s3.delete_object_tagging(Bucket=n.bucket, Key=n.existing),
    "GetObjectAcl": lambda s3, n: s3.get_object_acl(Bucket=n.bucket, Key=n.existing),
    "GetObjectAttributes": lambda s3, n: s3.get_object_attributes(
        Bucket=n.bucket, Key=n.existing, ObjectAttributes=["ETag"]
    ),
}

# The kinds of scope (columns), and the prefix each column's requests name in the bucket.
# "elsewhere" names a bucket other than the one the requests name; "prefix in" and
# "prefix out" are one key scoped to team/, asked inside and outside it.
COLUMNS = {
    "admin": ({}, "team/"),
    "read-write": ({"permission": READ_WRITE}, "team/"),
    "read-only": ({"permission": READ_ONLY}, "team/"),
    "bucket list": ({"buckets": ["{bucket}"]}, "team/"),
    "elsewhere": ({"buckets": ["{other}"]}, "team/"),
    "prefix in": ({"permission": READ_WRITE, "buckets": [("{bucket}", "team/")]}, "team/"),
    "prefix out": ({"permission": READ_WRITE, "buckets": [("{bucket}", "team/")]}, "other/"),
    "ip allowed": ({"networks": ["127.0.0.0/8", "::1/128"]}, "team/"),
    "ip denied": ({"networks": ["192.0.2.0/24"]}, "team/"),
}
ORDER = list(COLUMNS)
# Y: the gateway lets the request through; N: AccessDenied naming the key's scope. One
# letter per column, in ORDER.
READ_ANY = "YYYYNYYYN"  # seen by any key that can see the bucket
LIST = "YYYYNYNYN"  # listings: under a prefix inside the scope
READ = "YYYYNYNYN"  # object reads
WRITE = "YYNYNYNYN"  # object writes
READ_WHOLE = "YYYYNNNYN"  # bucket reads other than the above: the whole bucket
ADMIN_WHOLE = "YNNYNNNYN"  # bucket settings and deletion: admin on the whole bucket
MATRIX = {
    "ListBuckets": "YYYYYYYYN",
    # A name no org holds yet: "bucket list" does not name it.
    "CreateBucket": "YNNNNNNYN",
    "DeleteBucket": ADMIN_WHOLE,
    "HeadBucket": READ_ANY,
    "ListObjects": LIST,
    "ListObjectsV2": LIST,
    "ListObjectVersions": LIST,
    "ListMultipartUploads": LIST,
    "GetBucketLocation": READ_ANY,
    "GetBucketAcl": READ_WHOLE,
    "GetBucketCors": READ_WHOLE,
    "PutBucketCors": ADMIN_WHOLE,
    "DeleteBucketCors": ADMIN_WHOLE,
    "GetBucketVersioning": READ_WHOLE,
    "PutBucketVersioning": ADMIN_WHOLE,
    "GetBucketTagging": READ_WHOLE,
    "PutBucketTagging": ADMIN_WHOLE,
    "DeleteBucketTagging": ADMIN_WHOLE,
    "GetBucketLifecycleConfiguration": READ_WHOLE,
    "PutBucketLifecycleConfiguration": ADMIN_WHOLE,
    "DeleteBucketLifecycle": ADMIN_WHOLE,
    "DeleteObjects": WRITE,
    "GetObject": READ,
    "HeadObject": READ,
    "PutObject": WRITE,
    "CopyObject": WRITE,
    "DeleteObject": WRITE,
    "CreateMultipartUpload": WRITE,
    "UploadPart": WRITE,
    "UploadPartCopy": WRITE,
    "CompleteMultipartUpload": WRITE,
    "AbortMultipartUpload": WRITE,
    "ListParts": READ,
    "GetObjectTagging": READ,
    "PutObjectTagging": WRITE,
    "DeleteObjectTagging": WRITE,
    "GetObjectAcl": READ,
    "GetObjectAttributes": READ,
}


def test_it_tables_every_supported_operation():
    assert set(MATRIX) == set(CALLS) == {rule.name for rule in RULES}
    assert all(len(row) == len(ORDER) for row in MATRIX.values())


def _outcome(call: Callable[[], object]) -> tuple[int, str, str]:
    """(status, code, message) of a call: 200 when it succeeded."""
    try:
        call()
    except ClientError as error:
        answer = error.response
        return (
            answer["ResponseMetadata"]["HTTPStatusCode"],
            answer["Error"].get("Code", ""),
            answer["Error"].get("Message", ""),
        )
    return 200, "", ""


@pytest.mark.parametrize("column", ORDER)
def test_it_allows_or_denies_each_operation_by_each_kind_of_scope(gw, owner, column):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket, other = bucket_name(), bucket_name()
    for name in (bucket, other):
        admin.create_bucket(Bucket=name)
    for existing in ("team/a.txt", "other/a.txt"):
        admin.put_object(Bucket=bucket, Key=existing, Body=b"kept")
    parts, prefix = COLUMNS[column]
    scope = {
        part: [
            tuple(x.format(bucket=bucket, other=other) for x in item)
            if isinstance(item, tuple)
            else item.format(bucket=bucket, other=other)
            for item in value
        ]
        if part == "buckets"
        else value
        for part, value in parts.items()
    }
    key_id, secret = scoped_key(owner, "scoped", **scope)
    described = Scope.build(**scope).describe()
    s3 = s3_client(gw.url, key_id, secret)
    names = Names(bucket, prefix + "a.txt", prefix)

    wrong = []
    for operation, row in MATRIX.items():
        allowed = row[ORDER.index(column)] == "Y"
        status, code, message = _outcome(lambda c=CALLS[operation]: c(s3, names))
        if allowed:
            # Whatever the store makes of it, the gateway let it through.
            if status == 403:
                wrong.append(f"{operation}: denied ({code} {message})")
        elif status != 403 or code not in ("AccessDenied", "403"):
            wrong.append(f"{operation}: not denied ({status} {code} {message})")
        elif code == "AccessDenied" and message != DENIED_MESSAGE.format(described):
            wrong.append(f"{operation}: denied saying {message!r}")
    assert not wrong, f"{column} ({described}):\n" + "\n".join(wrong)
    # The bucket is still there (the store refused to delete it), and so is the object
    # that no request of this column named (the store may take an object tagging request
    # for something else).
    untouched = "other/a.txt" if prefix == "team/" else "team/a.txt"
    assert admin.get_object(Bucket=bucket, Key=untouched)["Body"].read() == b"kept"


# ---------------------------------------------------------------------------------------
# Bodies and sources


def test_it_refuses_delete_objects_whole_when_one_name_lies_outside(gw, owner):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket = bucket_name()
    admin.create_bucket(Bucket=bucket)
    for name in ("team/a", "team/b", "else/c"):
        admin.put_object(Bucket=bucket, Key=name, Body=b"x")
    scoped = s3_client(
        gw.url,
        *scoped_key(owner, "team", permission=READ_WRITE, buckets=[(bucket, "team/")]),
    )
    with pytest.raises(ClientError) as refused:
        scoped.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "team/a"}, {"Key": "else/c"}]}
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    listed = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"team/a", "team/b", "else/c"}
    deleted = scoped.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "team/a"}, {"Key": "team/b"}]}
    )
    assert not deleted.get("Errors")
    listed = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"else/c"}


def test_it_refuses_a_copy_whose_source_lies_outside_the_scope(gw, owner):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket, other = bucket_name(), bucket_name()
    for name in (bucket, other):
        admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=bucket, Key="team/mine", Body=b"mine")
    admin.put_object(Bucket=bucket, Key="secret/theirs", Body=b"theirs")
    admin.put_object(Bucket=other, Key="team/elsewhere", Body=b"elsewhere")
    scoped = s3_client(
        gw.url,
        *scoped_key(owner, "team", permission=READ_WRITE, buckets=[(bucket, "team/")]),
    )
    for source in (
        {"Bucket": bucket, "Key": "secret/theirs"},
        {"Bucket": other, "Key": "team/elsewhere"},
    ):
        with pytest.raises(ClientError) as refused:
            scoped.copy_object(Bucket=bucket, Key="team/stolen", CopySource=source)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        admin.head_object(Bucket=bucket, Key="team/stolen")
    scoped.copy_object(
        Bucket=bucket, Key="team/copy", CopySource={"Bucket": bucket, "Key": "team/mine"}
    )
    assert scoped.get_object(Bucket=bucket, Key="team/copy")["Body"].read() == b"mine"


# ---------------------------------------------------------------------------------------
# Ordinary clients


def _rclone(tmp_path: Path, url: str, key_id: str, secret: str, *args: str):
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[exc]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {key_id}\nsecret_access_key = {secret}\n"
        f"endpoint = {url}\nregion = us-east-1\nforce_path_style = true\n"
    )
    return subprocess.run(
        [RCLONE, "--config", str(conf), "--retries", "1", "--low-level-retries", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_lets_a_read_only_key_read_with_aws_cli_and_rclone_but_change_nothing(
    gw, owner, tmp_path
):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket = bucket_name()
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"read me")
    admin.put_object(Bucket=bucket, Key="top.txt", Body=b"top")
    key_id, secret = scoped_key(owner, "reader", permission=READ_ONLY, buckets=[bucket])

    def aws(*args: str) -> str:
        return _aws(tmp_path, gw.url, key_id, secret, *args)

    buckets = {line.split()[-1] for line in aws("s3", "ls").splitlines() if line.strip()}
    assert buckets == {bucket}
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}")
    assert "docs/readme.txt" in listing and "top.txt" in listing
    down = tmp_path / "down"
    aws("s3", "cp", "--recursive", f"s3://{bucket}/docs/", str(down))
    assert (down / "readme.txt").read_bytes() == b"read me"
    copied = tmp_path / "rclone-down"
    result = _rclone(tmp_path, gw.url, key_id, secret, "copy", f"exc:{bucket}", str(copied))
    assert result.returncode == 0, result.stderr
    assert (copied / "docs" / "readme.txt").read_bytes() == b"read me"
    assert (copied / "top.txt").read_bytes() == b"top"

    upload = tmp_path / "new.txt"
    upload.write_bytes(b"new")
    refused = [
        _run_aws(tmp_path, gw.url, key_id, secret, "s3", "cp", str(upload), f"s3://{bucket}/"),
        _run_aws(tmp_path, gw.url, key_id, secret, "s3", "rm", f"s3://{bucket}/top.txt"),
        _run_aws(tmp_path, gw.url, key_id, secret, "s3", "rb", "--force", f"s3://{bucket}"),
    ]
    for result in refused:
        assert result.returncode != 0
        assert "AccessDenied" in result.stderr, result.stderr
    result = _rclone(tmp_path, gw.url, key_id, secret, "copy", str(upload), f"exc:{bucket}/up")
    assert result.returncode != 0 and "AccessDenied" in result.stderr, result.stderr
    result = _rclone(tmp_path, gw.url, key_id, secret, "deletefile", f"exc:{bucket}/top.txt")
    assert result.returncode != 0 and "AccessDenied" in result.stderr, result.stderr
    kept = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert kept == {"docs/readme.txt", "top.txt"}


def test_it_lets_a_prefix_scoped_key_sync_inside_its_prefix_only(gw, owner, tmp_path):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket = bucket_name()
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="private/secret.txt", Body=b"secret")
    key_id, secret = scoped_key(owner, "team", permission=READ_WRITE, buckets=[(bucket, "team/")])
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_bytes(b"a")
    (local / "sub" / "b.txt").write_bytes(b"b")

    def aws(*args: str):
        return _run_aws(tmp_path, gw.url, key_id, secret, *args)

    synced = aws("s3", "sync", str(local), f"s3://{bucket}/team/")
    assert synced.returncode == 0, synced.stderr
    listed = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"private/secret.txt", "team/a.txt", "team/sub/b.txt"}
    # A second sync finds nothing to do, and a sync down brings the prefix back.
    again = aws("s3", "sync", str(local), f"s3://{bucket}/team/")
    assert again.returncode == 0 and "upload:" not in again.stdout, again.stdout
    back = tmp_path / "back"
    down = aws("s3", "sync", f"s3://{bucket}/team/", str(back))
    assert down.returncode == 0, down.stderr
    assert (back / "sub" / "b.txt").read_bytes() == b"b"

    for outside in (f"s3://{bucket}/private/", f"s3://{bucket}/", f"s3://{bucket}/teamwork/"):
        result = aws("s3", "sync", str(local), outside)
        assert result.returncode != 0, outside
        assert "AccessDenied" in result.stderr, result.stderr
    result = aws("s3", "cp", f"s3://{bucket}/private/secret.txt", str(tmp_path / "stolen"))
    assert result.returncode != 0
    assert not (tmp_path / "stolen").exists()
    listed = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"private/secret.txt", "team/a.txt", "team/sub/b.txt"}


def test_it_lists_only_the_buckets_of_a_bucket_scoped_key(gw, owner, tmp_path):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    mine, also, other = bucket_name(), bucket_name(), bucket_name()
    for name in (mine, also, other):
        admin.create_bucket(Bucket=name)
    key_id, secret = scoped_key(owner, "two", buckets=[mine, (also, "x/")])
    listed = _aws(tmp_path, gw.url, key_id, secret, "s3", "ls")
    names = {line.split()[-1] for line in listed.splitlines() if line.strip()}
    assert names == {mine, also}
    boto_names = {b["Name"] for b in s3_client(gw.url, key_id, secret).list_buckets()["Buckets"]}
    assert boto_names == {mine, also}
    # The org's other keys still see all of its buckets.
    assert {mine, also, other} <= {b["Name"] for b in admin.list_buckets()["Buckets"]}


# ---------------------------------------------------------------------------------------
# Source addresses


def _signed_get(url: str, key_id: str, secret: str, path: str, **unsigned: str) -> httpx.Response:
    """A GET signed by botocore, with ``unsigned`` headers added after signing (as a proxy
    adds X-Forwarded-For)."""
    request = AWSRequest(method="GET", url=url + path)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(b"").hexdigest()
    S3SigV4Auth(Credentials(key_id, secret), "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    headers.update({name.replace("_", "-"): value for name, value in unsigned.items()})
    return httpx.get(url + path, headers=headers, timeout=10)


def _code(response: httpx.Response) -> str | None:
    found = re.search(r"<Code>([^<]*)</Code>", response.text)
    return found.group(1) if found else None


def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(gw, store, owner, tmp_path):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket = bucket_name()
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="k.txt", Body=b"k")
    office = scoped_key(owner, "office", networks=["203.0.113.0/24", "2001:db8::/32"])
    local = scoped_key(owner, "local", networks=["127.0.0.0/8"])
    path = f"/{bucket}/k.txt"

    with gateway(tmp_path, store, forwarded_allow_ips="127.0.0.1") as proxied:
        # Behind the proxy the gateway trusts, the address it forwards is the client's.
        for address in ("203.0.113.9", "2001:db8::5", "198.51.100.1, 203.0.113.9"):
            answer = _signed_get(proxied.url, *office, path, X_Forwarded_For=address)
            assert (answer.status_code, answer.content) == (200, b"k"), address
        for address in ("198.51.100.1", "203.0.113.9, 198.51.100.1", "127.0.0.1"):
            answer = _signed_get(proxied.url, *office, path, X_Forwarded_For=address)
            assert (answer.status_code, _code(answer)) == (403, "AccessDenied"), address
            assert "from 203.0.113.0/24, 2001:db8::/32" in answer.text
        # Without the header the request is the proxy's own.
        assert _signed_get(proxied.url, *office, path).status_code == 403
        assert _signed_get(proxied.url, *local, path).status_code == 200
        answer = _signed_get(proxied.url, *local, path, X_Forwarded_For="198.51.100.1")
        assert answer.status_code == 403

    # A gateway that trusts no proxy ignores the header: the connection's address counts.
    answer = _signed_get(gw.url, *office, path, X_Forwarded_For="203.0.113.9")
    assert (answer.status_code, _code(answer)) == (403, "AccessDenied")
    answer = _signed_get(gw.url, *local, path, X_Forwarded_For="198.51.100.1")
    assert (answer.status_code, answer.content) == (200, b"k")


# ---------------------------------------------------------------------------------------
# Narrowing a live key


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_it_applies_a_narrowed_scope_on_the_next_request_at_every_gateway(store, owner, tmp_path):
    with (
        gateway(tmp_path, store, redis_url=settings.REDIS_URL) as first,
        gateway(tmp_path, store, redis_url=settings.REDIS_URL) as second,
    ):
        created = create_key(owner, Actor.for_user(owner.user), "live")
        key, secret = created.key, created.secret
        bucket, other = bucket_name(), bucket_name()
        clients = [s3_client(g.url, key.id, secret) for g in (first, second)]
        clients[0].create_bucket(Bucket=bucket)
        clients[1].create_bucket(Bucket=other)
        # Each gateway has the key cached (each request after the first is a cache hit).
        for index, s3 in enumerate(clients):
            for round_ in range(3):
                s3.put_object(Bucket=bucket, Key=f"team/{index}-{round_}", Body=b"x")
                s3.put_object(Bucket=other, Key=f"{index}-{round_}", Body=b"x")

        narrow_key_scope(
            owner,
            Actor.for_user(owner.user),
            key,
            Scope.build(permission=READ_ONLY, buckets=[(bucket, "team/")]),
        )

        for s3 in clients:
            for request in (
                lambda s3=s3: s3.put_object(Bucket=bucket, Key="team/after", Body=b"x"),
                lambda s3=s3: s3.get_object(Bucket=other, Key="0-0"),
                lambda s3=s3: s3.list_objects_v2(Bucket=bucket),
            ):
                with pytest.raises(ClientError) as refused:
                    request()
                error = refused.value.response["Error"]
                assert error["Code"] == "AccessDenied"
                assert error["Message"] == DENIED_MESSAGE.format(f"read-only on {bucket}/team/*")
            assert s3.get_object(Bucket=bucket, Key="team/0-0")["Body"].read() == b"x"
            listed = s3.list_objects_v2(Bucket=bucket, Prefix="team/")["Contents"]
            assert len(listed) == 6
            assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]


def test_it_decides_browser_uploads_and_presigned_urls_by_the_scope(gw, owner):
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket = bucket_name()
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="private/secret.txt", Body=b"secret")
    s3 = s3_client(
        gw.url, *scoped_key(owner, "uploads", permission=READ_WRITE, buckets=[(bucket, "up/")])
    )
    for name, allowed in (("up/photo.jpg", True), ("private/photo.jpg", False)):
        post = s3.generate_presigned_post(bucket, name, ExpiresIn=300)
        answer = httpx.post(
            post["url"], data=post["fields"], files={"file": ("photo.jpg", b"jpeg")}, timeout=10
        )
        if allowed:
            assert answer.status_code == 204, answer.text
        else:
            assert (answer.status_code, _code(answer)) == (403, "AccessDenied"), answer.text
    listed = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"up/photo.jpg", "private/secret.txt"}
    for name, status in (("up/photo.jpg", 200), ("private/secret.txt", 403)):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": name})
        assert httpx.get(url, timeout=10).status_code == status, name
