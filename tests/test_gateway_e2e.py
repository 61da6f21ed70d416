"""The S3 gateway end to end: rclone serve s3 upstream, the gateway under uvicorn, and real
clients (boto3, the aws CLI, the rclone binary) using keys created in the dashboard as a
person does (the main flows) or through keys.services (the rest)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from audit.models import AuditEvent
from gateway.models import Bucket
from gateway.sigv4 import derive_signing_key
from tests.conftest import STORES, client_for, new_key
from tests.gateway_stack import BIN, RCLONE, gateway
from tests.sigv4_support import ChunkSigner, crc32_b64

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("store", STORES, indirect=True, scope="module"),
]

# The embedded store keeps objects as files, so it refuses names with "//" in them.
ODD_KEYS = [
    "with space.txt",
    "plus+sign.txt",
    "per%cent.txt",
    "ünïcødé/ファイル.txt",
    "a=b&c;d.txt",
]
MiB = 1024 * 1024
# The gateway's public host name in these tests; <bucket>.s3.test resolves to 127.0.0.1
# only inside the tests that patch name resolution.
VIRTUAL_HOST = "s3.test"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store, endpoint_host=VIRTUAL_HOST) as running:
        yield running


def s3_client(endpoint: str, key_id: str, secret: str, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            # boto3 presigns with Signature Version 2 unless told; the gateway takes SigV4 only.
            signature_version="s3v4",
            **config,
        ),
    )


def portal_key(membership, name: str = "laptop") -> tuple[str, str]:
    """(ID, secret) of a key created as a person does: signed in to the dashboard, through
    its create form, read off the one page that shows the secret. The request commits, so
    the gateway process sees the key."""
    client = client_for(membership)
    slug = membership.org.slug
    page = client.get(f"/orgs/{slug}/keys/")
    assert page.status_code == 200
    token = re.search(rb'name="creation_token" value="([^"]+)"', page.content).group(1).decode()
    created = client.post(f"/orgs/{slug}/keys/new/", {"name": name, "creation_token": token})
    assert created.status_code == 200
    key_id = re.search(rb'id="new-access-key-id">([^<]+)<', created.content).group(1).decode()
    secret = re.search(rb'id="new-secret-access-key" class="secret">([^<]+)<', created.content)
    assert re.fullmatch(r"EXC[A-Z2-7]{17}", key_id)
    return key_id, secret.group(1).decode()


def bucket_name() -> str:
    return "b-" + uuid.uuid4().hex[:16]


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_it_serves_boto3_end_to_end(gw, owner, tmp_path):
    key_id, secret = portal_key(owner)
    s3 = s3_client(gw.url, key_id, secret)
    name = bucket_name()

    s3.create_bucket(Bucket=name)
    assert Bucket.objects.get(name=name).org == owner.org
    assert AuditEvent.objects.filter(action="bucket.created", target_id=name).exists()

    s3.put_object(Bucket=name, Key="small.txt", Body=b"hello, gateway")
    for odd in ODD_KEYS:
        s3.put_object(Bucket=name, Key=odd, Body=odd.encode())

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * MiB))
    transfer = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    parts = []
    s3.meta.events.register(
        "after-call.s3.UploadPart", lambda http_response, **kw: parts.append(http_response)
    )
    s3.upload_file(str(big), name, "big.bin", Config=transfer)
    assert len(parts) == 8 and all(r.status_code == 200 for r in parts)

    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]}
    assert listed == {"small.txt", "big.bin", *ODD_KEYS}
    for odd in ODD_KEYS:
        assert s3.get_object(Bucket=name, Key=odd)["Body"].read() == odd.encode()

    copy = tmp_path / "copy.bin"
    s3.download_file(name, "big.bin", str(copy), Config=transfer)
    assert _sha256(copy) == _sha256(big)

    ranged = s3.get_object(Bucket=name, Key="small.txt", Range="bytes=7-13")
    assert ranged["Body"].read() == b"gateway"
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206

    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": name, "Key": ODD_KEYS[3]}, ExpiresIn=300
    )
    with urllib.request.urlopen(url) as response:
        assert response.read() == ODD_KEYS[3].encode()
        # A browser opening the link must not sniff the object into something else.
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    s3.copy_object(Bucket=name, Key="copied.txt", CopySource={"Bucket": name, "Key": "small.txt"})
    assert s3.get_object(Bucket=name, Key="copied.txt")["Body"].read() == b"hello, gateway"

    deleted = s3.delete_objects(
        Bucket=name,
        Delete={"Objects": [{"Key": k} for k in ["small.txt", "big.bin", "copied.txt", *ODD_KEYS]]},
    )
    assert not deleted.get("Errors")
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    s3.delete_bucket(Bucket=name)
    assert not Bucket.objects.filter(name=name).exists()
    assert AuditEvent.objects.filter(action="bucket.deleted", target_id=name).exists()


def test_it_answers_ranges_as_s3_does(gw, owner):
    # The embedded store answers a range with 200 (the gateway makes it 206); SeaweedFS
    # answers 206 itself.
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="small.txt", Body=b"hello, gateway", ChecksumAlgorithm="CRC32")

    for asked, answered, content_range in [
        ("bytes=7-13", b"gateway", "bytes 7-13/14"),
        ("bytes=-5", b"teway", "bytes 9-13/14"),
        ("bytes=5-", b", gateway", "bytes 5-13/14"),
        ("bytes=0-", b"hello, gateway", "bytes 0-13/14"),
    ]:
        # With checksum validation on, as aws-cli v2 and newer SDKs do: a whole-object
        # checksum on a range would fail it.
        ranged = s3.get_object(Bucket=name, Key="small.txt", Range=asked, ChecksumMode="ENABLED")
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206, asked
        assert ranged["ContentRange"] == content_range
        assert ranged["Body"].read() == answered
    whole = s3.get_object(Bucket=name, Key="small.txt", ChecksumMode="ENABLED")
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "ContentRange" not in whole
    assert whole["Body"].read() == b"hello, gateway"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _signed_put(endpoint: str, key_id: str, secret: str, path: str, signed_body: bytes):
    """A PutObject signed by botocore with a literal payload hash of ``signed_body``."""
    request = AWSRequest(method="PUT", url=endpoint + path, data=signed_body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(signed_body).hexdigest()
    S3SigV4Auth(Credentials(key_id, secret), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_it_answers_s3_errors_for_bad_credentials_and_foreign_buckets(gw, store, owner, outsider):
    key_id, secret = portal_key(owner)
    other_key_id, other_secret = portal_key(outsider, "globex-laptop")
    mine = s3_client(gw.url, key_id, secret)
    theirs = s3_client(gw.url, other_key_id, other_secret)
    name = bucket_name()
    mine.create_bucket(Bucket=name)
    mine.put_object(Bucket=name, Key="secret.txt", Body=b"acme only")

    with pytest.raises(ClientError) as excinfo:
        s3_client(gw.url, key_id, "x" * 40).list_objects_v2(Bucket=name)
    assert error_code(excinfo) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as excinfo:
        s3_client(gw.url, "EXC" + "A" * 17, secret).list_objects_v2(Bucket=name)
    assert error_code(excinfo) == "InvalidAccessKeyId"

    for attempt in (
        lambda: theirs.get_object(Bucket=name, Key="secret.txt"),
        lambda: theirs.put_object(Bucket=name, Key="planted.txt", Body=b"x"),
        lambda: theirs.list_objects_v2(Bucket=name),
        lambda: theirs.delete_object(Bucket=name, Key="secret.txt"),
        lambda: theirs.delete_bucket(Bucket=name),
    ):
        with pytest.raises(ClientError) as excinfo:
            attempt()
        assert error_code(excinfo) == "AccessDenied", excinfo.value.response["Error"].get(
            "CanonicalRequest"
        )
    with pytest.raises(ClientError) as excinfo:
        theirs.create_bucket(Bucket=name)
    assert error_code(excinfo) == "BucketAlreadyExists"
    # Copying out of a foreign bucket into one's own is a read of the foreign bucket.
    own = bucket_name()
    theirs.create_bucket(Bucket=own)
    with pytest.raises(ClientError) as excinfo:
        theirs.copy_object(
            Bucket=own, Key="stolen.txt", CopySource={"Bucket": name, "Key": "secret.txt"}
        )
    assert error_code(excinfo) == "AccessDenied"

    assert [b["Name"] for b in theirs.list_buckets()["Buckets"]] == [own]
    assert [b["Name"] for b in mine.list_buckets()["Buckets"]] == [name]
    assert mine.get_object(Bucket=name, Key="secret.txt")["Body"].read() == b"acme only"

    # A bucket that exists in the store but that no org owns is nobody's to use.
    direct = s3_client(store.url, store.access_key_id, store.secret_access_key)
    stray = bucket_name()
    direct.create_bucket(Bucket=stray)
    with pytest.raises(ClientError) as excinfo:
        mine.list_objects_v2(Bucket=stray)
    assert error_code(excinfo) == "NoSuchBucket"
    with pytest.raises(ClientError) as excinfo:
        mine.create_bucket(Bucket=stray)
    assert error_code(excinfo) == "BucketAlreadyExists"
    assert not Bucket.objects.filter(name=stray).exists()


def test_it_refuses_a_body_that_does_not_match_its_signed_hash(gw, store, owner):
    key, secret = new_key(owner)
    name = bucket_name()
    s3_client(gw.url, key.id, secret).create_bucket(Bucket=name)
    headers = _signed_put(gw.url, key.id, secret, f"/{name}/tampered.txt", b"what was signed")

    response = httpx.put(
        f"{gw.url}/{name}/tampered.txt", headers=headers, content=b"what was sent!!"
    )

    assert response.status_code == 400
    assert b"<Code>XAmzContentSHA256Mismatch</Code>" in response.content
    direct = s3_client(store.url, store.access_key_id, store.secret_access_key)
    assert "Contents" not in direct.list_objects_v2(Bucket=name)


def test_it_refuses_signature_version_2_with_a_clear_error(gw, owner):
    key, secret = new_key(owner)
    v2 = boto3.client(
        "s3",
        endpoint_url=gw.url,
        aws_access_key_id=key.id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3"),
    )
    url = v2.generate_presigned_url("list_objects_v2", Params={"Bucket": "any"}, ExpiresIn=60)
    assert "AWSAccessKeyId=" in url

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(url)

    assert excinfo.value.code == 400
    assert b"<Code>InvalidRequest</Code>" in excinfo.value.read()


def _aws(tmp_path: Path, gw_url: str, key_id: str, secret: str, *args: str) -> str:
    result = _run_aws(tmp_path, gw_url, key_id, secret, *args)
    assert result.returncode == 0, f"aws {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _run_aws(
    tmp_path: Path, gw_url: str, key_id: str, secret: str, *args: str
) -> subprocess.CompletedProcess:
    config = tmp_path / "aws-config"
    # aws-cli v1 presigns with Signature Version 2 unless told; the gateway takes SigV4 only.
    config.write_text(
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"
        "    signature_version = s3v4\n"
    )
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
    }
    return subprocess.run(
        [str(BIN / "aws"), "--endpoint-url", gw_url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_answers_bucket_errors_as_s3_does(gw, owner, outsider, tmp_path):
    key, secret = new_key(owner)
    theirs_key, theirs_secret = new_key(outsider)
    mine = s3_client(gw.url, key.id, secret)
    theirs = s3_client(gw.url, theirs_key.id, theirs_secret)
    missing = bucket_name()

    typo = _run_aws(tmp_path, gw.url, key.id, secret, "s3", "ls", f"s3://{missing}")
    assert typo.returncode != 0
    assert "NoSuchBucket" in typo.stderr, typo.stderr
    with pytest.raises(ClientError) as excinfo:
        mine.head_bucket(Bucket=missing)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    name = bucket_name()
    mine.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as excinfo:
        mine.create_bucket(Bucket=name)
    assert error_code(excinfo) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as excinfo:
        theirs.create_bucket(Bucket=name)
    assert error_code(excinfo) == "BucketAlreadyExists"
    with pytest.raises(ClientError) as excinfo:
        theirs.head_bucket(Bucket=name)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A copy out of a bucket nobody holds: NoSuchBucket too.
    with pytest.raises(ClientError) as excinfo:
        mine.copy_object(Bucket=name, Key="k", CopySource={"Bucket": missing, "Key": "k"})
    assert error_code(excinfo) == "NoSuchBucket"
    assert Bucket.objects.get(name=name).org == owner.org


def test_it_serves_the_aws_cli(gw, owner, tmp_path):
    key_id, secret = portal_key(owner)
    name = bucket_name()
    local = tmp_path / "files"
    local.mkdir()
    (local / "with space+plus%.txt").write_bytes(b"odd name")
    (local / "big.bin").write_bytes(os.urandom(20 * MiB))  # aws s3 cp goes multipart at 8 MiB

    def aws(*args: str) -> str:
        return _aws(tmp_path, gw.url, key_id, secret, *args)

    aws("s3", "mb", f"s3://{name}")
    aws("s3", "cp", "--recursive", str(local), f"s3://{name}/up/")
    listing = aws("s3", "ls", f"s3://{name}/up/")
    assert "with space+plus%.txt" in listing and "big.bin" in listing
    back = tmp_path / "back"
    aws("s3", "cp", "--recursive", f"s3://{name}/up/", str(back))
    assert (back / "big.bin").read_bytes() == (local / "big.bin").read_bytes()
    assert (back / "with space+plus%.txt").read_bytes() == b"odd name"
    ranged = tmp_path / "ranged"
    aws(
        "s3api",
        "get-object",
        "--bucket",
        name,
        "--key",
        "up/with space+plus%.txt",
        "--range",
        "bytes=4-7",
        str(ranged),
    )
    assert ranged.read_bytes() == b"name"
    url = aws("s3", "presign", f"s3://{name}/up/with space+plus%.txt").strip()
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"odd name"
    aws("s3", "rm", "--recursive", f"s3://{name}/up/")
    aws("s3", "rb", f"s3://{name}")
    assert not Bucket.objects.filter(name=name).exists()


def test_it_serves_rclone(gw, owner, tmp_path):
    key_id, secret = portal_key(owner)
    name = bucket_name()
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[exc]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {key_id}\nsecret_access_key = {secret}\n"
        f"endpoint = {gw.url}\nregion = us-east-1\nforce_path_style = true\n"
    )
    local = tmp_path / "files"
    local.mkdir()
    (local / "ünïcødé name.txt").write_bytes(b"from rclone")
    (local / "big.bin").write_bytes(os.urandom(12 * MiB))

    def rclone(*args: str) -> str:
        result = subprocess.run(
            [RCLONE, "--config", str(conf), "--s3-upload-cutoff", "5Mi", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"rclone {args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    rclone("mkdir", f"exc:{name}")
    assert Bucket.objects.get(name=name).org == owner.org
    rclone("copy", str(local), f"exc:{name}/dir")
    assert sorted(rclone("lsf", f"exc:{name}/dir").split()) == sorted(
        ["big.bin", "ünïcødé", "name.txt"]
    )
    rclone("check", str(local), f"exc:{name}/dir")  # sizes and hashes match
    assert rclone("cat", f"exc:{name}/dir/ünïcødé name.txt") == "from rclone"
    assert rclone("cat", "--offset", "5", "--count", "6", f"exc:{name}/dir/ünïcødé name.txt") == (
        "rclone"
    )
    rclone("purge", f"exc:{name}")
    assert not Bucket.objects.filter(name=name).exists()


def test_it_serves_virtual_hosted_style_requests(gw, owner, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == VIRTUAL_HOST or str(host).endswith("." + VIRTUAL_HOST):
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    key, secret = new_key(owner)
    port = gw.url.rsplit(":", 1)[1]
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{VIRTUAL_HOST}:{port}",
        aws_access_key_id=key.id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "virtual"}, signature_version="s3v4"),
    )
    name = bucket_name()
    sent_to = []
    s3.meta.events.register(
        "before-send.s3.*", lambda request, **kw: sent_to.append(urlsplit(request.url).hostname)
    )

    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="dir/ü +.txt", Body=b"virtual")

    assert s3.get_object(Bucket=name, Key="dir/ü +.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["dir/ü +.txt"]
    assert set(sent_to) == {f"{name}.{VIRTUAL_HOST}"}
    assert Bucket.objects.get(name=name).org == owner.org


class _StreamingAuth(S3SigV4Auth):
    """botocore's S3 signer with the payload hash set to a streaming mode."""

    def __init__(self, credentials, mode: str) -> None:
        super().__init__(credentials, "s3", "us-east-1")
        self.mode = mode

    def payload(self, request):
        return self.mode


def _signed_chunked_put(url: str, key_id: str, secret: str, payload: bytes, trailer: bool):
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    request = AWSRequest(method="PUT", url=url)
    request.headers["Content-Encoding"] = "aws-chunked"
    request.headers["X-Amz-Decoded-Content-Length"] = str(len(payload))
    if trailer:
        request.headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    _StreamingAuth(Credentials(key_id, secret), mode).add_auth(request)
    headers = dict(request.headers.items())
    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    signing_key = derive_signing_key(secret, amz_date[:8], "us-east-1")
    checksum = ("x-amz-checksum-crc32", crc32_b64(payload)) if trailer else None
    body = ChunkSigner(signing_key, seed, amz_date, scope).body(payload, 64 * 1024, checksum)
    headers["Content-Length"] = str(len(body))
    return headers, body


@pytest.mark.parametrize("trailer", [False, True])
def test_it_decodes_signed_aws_chunked_uploads_before_storing_them(gw, store, owner, trailer):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    payload = os.urandom(300 * 1024)
    url = f"{gw.url}/{name}/chunked.bin"
    headers, body = _signed_chunked_put(url, key.id, secret, payload, trailer)

    response = httpx.put(url, headers=headers, content=body)

    assert response.status_code == 200, response.text
    stored = s3.get_object(Bucket=name, Key="chunked.bin")
    assert stored["Body"].read() == payload
    assert "aws-chunked" not in stored.get("ContentEncoding", "")

    # One flipped byte in the second chunk: its signature fails and nothing is stored.
    headers, body = _signed_chunked_put(
        url.replace("chunked", "tampered"), key.id, secret, payload, trailer
    )
    second_chunk = body.index(b"\r\n", body.index(b";chunk-signature=", 100)) + 2
    tampered = body[:second_chunk] + bytes([body[second_chunk] ^ 1]) + body[second_chunk + 1 :]
    response = httpx.put(url.replace("chunked", "tampered"), headers=headers, content=tampered)
    assert response.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.content
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["chunked.bin"]


def _unsigned_trailer_put(url: str, key_id: str, secret: str, payload: bytes, checksum: str):
    """What boto3 sends over HTTPS: the header signed, the body aws-chunked without chunk
    signatures, and a CRC32 trailer."""
    request = AWSRequest(method="PUT", url=url)
    request.headers["Content-Encoding"] = "aws-chunked"
    request.headers["X-Amz-Decoded-Content-Length"] = str(len(payload))
    request.headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    request.headers["X-Amz-Sdk-Checksum-Algorithm"] = "CRC32"
    _StreamingAuth(Credentials(key_id, secret), "STREAMING-UNSIGNED-PAYLOAD-TRAILER").add_auth(
        request
    )
    headers = dict(request.headers.items())
    size = 64 * 1024
    chunks = [
        f"{len(payload[i : i + size]):x}\r\n".encode() + payload[i : i + size] + b"\r\n"
        for i in range(0, len(payload), size)
    ]
    body = b"".join(chunks) + f"0\r\nx-amz-checksum-crc32:{checksum}\r\n\r\n".encode()
    headers["Content-Length"] = str(len(body))
    return headers, body


def test_it_decodes_unsigned_trailer_uploads_and_checks_their_checksum(gw, owner):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    payload = os.urandom(200 * 1024)

    url = f"{gw.url}/{name}/trailer.bin"
    headers, body = _unsigned_trailer_put(url, key.id, secret, payload, crc32_b64(payload))
    response = httpx.put(url, headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=name, Key="trailer.bin")["Body"].read() == payload

    url = f"{gw.url}/{name}/corrupt.bin"
    headers, body = _unsigned_trailer_put(url, key.id, secret, payload, crc32_b64(b"other"))
    response = httpx.put(url, headers=headers, content=body)
    assert response.status_code == 400
    assert b"<Code>BadDigest</Code>" in response.content
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["trailer.bin"]


def test_only_s3_headers_of_the_stores_answer_reach_the_client(gw, store, owner):
    """A store's own headers (SeaweedFS's Seaweed-*, for one) describe the store, not the
    object: what a client gets is S3's headers, user metadata included, and the gateway's."""
    from gateway import proxy

    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(
        Bucket=name,
        Key="kept.txt",
        Body=b"kept",
        ContentType="text/plain",
        CacheControl="no-cache",
        Metadata={"colour": "blue"},
    )
    gateways_own = {"date", "server", "x-content-type-options", "content-length"}
    for call in (s3.get_object, s3.head_object):
        answer = call(Bucket=name, Key="kept.txt")
        headers = answer["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amz-meta-colour"] == "blue"
        assert headers["content-type"] == "text/plain"
        assert headers["cache-control"] == "no-cache"
        assert "etag" in headers and "last-modified" in headers
        strays = {
            header
            for header in headers
            if not proxy.is_relayed(header) and header not in gateways_own
        }
        assert strays == set(), strays
