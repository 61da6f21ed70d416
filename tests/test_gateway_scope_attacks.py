"""Attacks on a prefix-scoped key's boundary, sent as raw requests.

The key may read and write ``team/`` in one bucket of its org. The same bucket holds
``secret/theirs`` and the org has another bucket; the requests below are correctly signed
by the scoped key (tests/s3_raw.py sends the target bytes exactly as written) and each
tries to reach outside the prefix in a way no SDK would send: dot segments, plain or
percent-encoded, encoded separators, copy sources spelled the same ways or given twice,
a delete body with a name that climbs out, listings with a prefix that does, a query
parameter given twice. Each must be refused, leak none of the bytes or names outside the
scope, and leave the store's files as they were.
"""

from __future__ import annotations

import uuid

import pytest

from keys.scope import READ_WRITE
from tests.gateway_stack import gateway
from tests.s3_raw import Response, Signer
from tests.test_gateway_attacks import delete_body, files, md5_header, refused
from tests.test_gateway_scopes import s3_client, scoped_key

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = b"outside the scope: do not read"
OTHER = b"another bucket of the org: do not read"
MINE = b"inside the scope"


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gw(request, tmp_path_factory, store):
    with gateway(
        tmp_path_factory.mktemp("gw"),
        store,
        http=request.param,
        # Every request here fails on purpose: keep the per-IP failure limit out of the way.
        EXCLOUD_S3_FAILURE_LIMIT="100000",
    ) as running:
        yield running


@pytest.fixture
def bounds(gw, store, owner):
    """(signer of the scoped key, its bucket, the org's other bucket); on the way out, the
    store's files of both buckets are checked to be as they were."""
    admin = s3_client(gw.url, *scoped_key(owner, "setup"))
    bucket, other = "t-" + uuid.uuid4().hex[:16], "o-" + uuid.uuid4().hex[:16]
    for name in (bucket, other):
        admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=bucket, Key="team/mine", Body=MINE)
    admin.put_object(Bucket=bucket, Key="secret/theirs", Body=SECRET)
    admin.put_object(Bucket=other, Key="team/elsewhere", Body=OTHER)
    before = {name: files(store.root / name) for name in (bucket, other)}
    key_id, secret = scoped_key(owner, "team", permission=READ_WRITE, buckets=[(bucket, "team/")])
    port = int(gw.url.rsplit(":", 1)[1])

    yield Signer(port, key_id, secret), bucket, other

    assert {name: files(store.root / name) for name in (bucket, other)} == before


def leaks(response: Response) -> bool:
    """Bytes of an object outside the scope, or its name listed (an error's Resource
    echoes the name the request asked for, which the attacker knows already)."""
    listed = (b"<Key>secret/theirs</Key>", b"<Key>team/elsewhere</Key>", b"<Prefix>secret/")
    return any(word in response.body for word in (SECRET, OTHER, *listed))


def mismatches(signer: Signer, cases) -> dict[str, tuple]:
    wrong = {}
    for index, (method, target, *options) in enumerate(cases):
        response = signer.request(method, target, **(options[0] if options else {}))
        if not refused(response) or leaks(response):
            wrong[f"{index}: {method} {target} {options}"] = (
                response.status,
                response.body.decode("latin-1"),
            )
    return wrong


def test_the_scoped_key_reads_and_writes_inside_its_prefix(bounds, store):
    signer, bucket, _ = bounds
    assert signer.request("GET", f"/{bucket}/team/mine").body == MINE
    put = signer.request("PUT", f"/{bucket}/team/new", body=b"new")
    assert put.status == 200
    assert (store.root / bucket / "team" / "new").read_bytes() == b"new"
    assert signer.request("DELETE", f"/{bucket}/team/new").status == 204


def test_it_refuses_object_names_that_climb_out_of_the_prefix(bounds):
    signer, bucket, other = bounds
    cases = [
        ("GET", f"/{bucket}/secret/theirs"),
        ("HEAD", f"/{bucket}/secret/theirs"),
        ("GET", f"/{bucket}/team/../secret/theirs"),
        ("GET", f"/{bucket}/team/%2e%2e/secret/theirs"),
        ("GET", f"/{bucket}/team/%2E%2E%2Fsecret%2Ftheirs"),
        ("GET", f"/{bucket}/team%2F..%2Fsecret%2Ftheirs"),
        ("GET", f"/{bucket}/team/./../secret/theirs"),
        ("GET", f"/{bucket}/team//../secret/theirs"),
        ("GET", f"/{bucket}/team/..%5Csecret%5Ctheirs"),
        ("GET", f"/{bucket}/team\\..\\secret\\theirs"),
        ("GET", f"/{bucket}/./secret/theirs"),
        ("GET", f"/{bucket}%2Fsecret%2Ftheirs"),
        ("GET", f"/{bucket}/teamsecret"),
        ("GET", f"/{other}/team/elsewhere"),
        ("GET", f"/{bucket}/team/..%2F..%2F{other}%2Fteam%2Felsewhere"),
        ("PUT", f"/{bucket}/team/../secret/theirs", {"body": b"overwritten"}),
        ("PUT", f"/{bucket}/team/%2e%2e/secret/planted", {"body": b"planted"}),
        ("PUT", f"/{bucket}/team/..%2F..%2F{other}%2Fplanted", {"body": b"planted"}),
        ("DELETE", f"/{bucket}/team/../secret/theirs"),
        ("DELETE", f"/{bucket}/team/%2e%2e/secret/theirs"),
        ("POST", f"/{bucket}/team/../secret/theirs?uploads"),
    ]
    assert mismatches(signer, cases) == {}


def test_it_refuses_copy_sources_that_climb_out_of_the_prefix(bounds):
    signer, bucket, other = bounds

    def copy(*sources: str, target: str = "team/copied"):
        return (
            "PUT",
            f"/{bucket}/{target}",
            {"headers": [("x-amz-copy-source", s) for s in sources]},
        )

    cases = [
        copy(f"/{bucket}/secret/theirs"),
        copy(f"{bucket}/secret/theirs"),
        copy(f"/{bucket}/team/../secret/theirs"),
        copy(f"/{bucket}/team/%2e%2e/secret/theirs"),
        copy(f"/{bucket}/team%2F..%2Fsecret%2Ftheirs"),
        copy(f"/{bucket}%2Fteam%2F..%2Fsecret%2Ftheirs"),
        copy(f"/{other}/team/elsewhere"),
        copy(f"/{bucket}/team/..%2F..%2F{other}%2Fteam%2Felsewhere"),
        copy(f"/{bucket}/team/mine", f"/{bucket}/secret/theirs"),
        copy(f"/{bucket}/secret/theirs", f"/{bucket}/team/mine"),
        # Into a name outside the scope from a source inside it.
        copy(f"/{bucket}/team/mine", target="secret/theirs"),
    ]
    assert mismatches(signer, cases) == {}


def test_it_refuses_a_delete_body_with_a_name_that_climbs_out(bounds):
    signer, bucket, _ = bounds
    cases = []
    for names in (
        ("team/mine", "team/../secret/theirs"),
        ("team/../secret/theirs",),
        ("team/%2e%2e/secret/theirs", "secret/theirs"),
        ("team/mine", "/secret/theirs"),
        ("team/mine", "team//../secret/theirs"),
    ):
        body = delete_body(*names)
        cases.append(("POST", f"/{bucket}?delete", {"body": body, "headers": [md5_header(body)]}))
    assert mismatches(signer, cases) == {}
    # Nothing inside the scope was deleted by a refused body either: the fixture checks
    # the files, this checks through the gateway.
    assert signer.request("GET", f"/{bucket}/team/mine").body == MINE


def test_it_refuses_listings_that_reach_outside_the_prefix(bounds):
    signer, bucket, other = bounds
    cases = [
        ("GET", f"/{bucket}?list-type=2"),
        ("GET", f"/{bucket}?list-type=2&prefix="),
        ("GET", f"/{bucket}?list-type=2&prefix=secret/"),
        ("GET", f"/{bucket}?list-type=2&prefix=team/../"),
        ("GET", f"/{bucket}?list-type=2&prefix=team/..%2Fsecret/"),
        ("GET", f"/{bucket}?list-type=2&prefix=team/../secret/"),
        ("GET", f"/{bucket}?list-type=2&prefix=tea"),
        ("GET", f"/{bucket}?list-type=2&prefix=team/&prefix=secret/"),
        ("GET", f"/{bucket}?list-type=2&prefix=secret/&prefix=team/"),
        ("GET", f"/{bucket}?prefix=team/../secret/"),
        ("GET", f"/{bucket}?versions&prefix=team/../"),
        ("GET", f"/{bucket}?uploads&prefix=team/../"),
        ("GET", f"/{other}?list-type=2&prefix=team/"),
    ]
    assert mismatches(signer, cases) == {}
    inside = signer.request("GET", f"/{bucket}?list-type=2&prefix=team/")
    assert inside.status == 200 and b"team/mine" in inside.body and not leaks(inside)
