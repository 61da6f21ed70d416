"""The REST API: who may call what (role × endpoint × own or foreign org), the one audit
event per change, the error shapes, and no secret after the create response."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from accounts.models import ApiToken, Membership
from accounts.tokens import create_api_token, revoke_api_token
from audit.trail import Actor
from keys.models import AccessKey, KeyStatus
from keys.services import deactivate_key

from .conftest import FrozenClock, audit_mark, events_since, new_key

OK = "ok"
IP = "203.0.113.9"
ROLES = ["owner", "admin", "member", "auditor"]


@pytest.fixture
def everyone(owner, admin, member, auditor, outsider) -> dict[str, Membership]:
    # Unlike conftest's, signs no one in up front: these tests mostly use API tokens.
    return {
        "owner": owner,
        "admin": admin,
        "member": member,
        "auditor": auditor,
        "outsider": outsider,
    }


@pytest.fixture
def tokens(everyone) -> dict[str, str]:
    return {
        who: create_api_token(m, Actor.for_user(m.user), f"{who}-token").plaintext
        for who, m in everyone.items()
    }


def call(token: str | None, method: str, path: str, body=None, raw: str | None = None):
    # CSRF checks on, as for a browser: bearer-token calls must not need a CSRF token.
    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1", REMOTE_ADDR=IP)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return client.generic(
        method, f"/api/v1{path}", data, content_type="application/json", headers=headers
    )


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]


# --- Changes: each row is (endpoint, acting role, whose key, expected) ---------------------

MUTATIONS = {
    "deactivate": ("POST", "/keys/{id}/deactivate", None, "access_key.deactivated"),
    "reactivate": ("POST", "/keys/{id}/reactivate", None, "access_key.reactivated"),
    "revoke": ("DELETE", "/keys/{id}", None, "access_key.revoked"),
    "rename": ("PATCH", "/keys/{id}", {"name": "renamed"}, "access_key.renamed"),
    "narrow": ("PUT", "/keys/{id}/scope", {"permission": "read-only"}, "access_key.scope_narrowed"),
}

MATRIX = [
    # Owners and admins change anyone's key; members their own; auditors nothing.
    *[(op, who, "owner", OK) for op in MUTATIONS for who in ("owner", "admin")],
    *[(op, who, "member", OK) for op in MUTATIONS for who in ("owner", "admin", "member")],
    *[(op, "member", "owner", 403) for op in MUTATIONS],
    *[(op, "auditor", whose, 403) for op in MUTATIONS for whose in ("owner", "member")],
    # Another org's key does not exist for anyone here, whatever their role.
    *[(op, who, "outsider", 404) for op in MUTATIONS for who in ROLES],
    *[(op, "outsider", whose, 404) for op in MUTATIONS for whose in ("owner", "member")],
]


@pytest.mark.parametrize(("op", "who", "whose", "expected"), MATRIX)
def test_it_enforces_the_permission_matrix_on_changes(everyone, tokens, op, who, whose, expected):
    keys = {w: new_key(everyone[w], f"{w}-key")[0] for w in ("owner", "member", "outsider")}
    key = keys[whose]
    if op == "reactivate":
        # Deactivated by its creator, so a member may undo it on their own key.
        deactivate_key(everyone[whose], Actor.for_user(everyone[whose].user), key)
    method, path, body, action = MUTATIONS[op]
    before = AccessKey.objects.filter(pk=key.pk).values().get()
    mark = audit_mark()

    response = call(tokens[who], method, path.format(id=key.pk), body)

    if expected == OK:
        assert response.status_code == 200, response.content
        assert response.json()["id"] == key.pk
        events = events_since(mark)
        assert [(e.action, e.actor_type, e.actor_user_id, e.target_id) for e in events] == [
            (action, "api_token", everyone[who].user_id, key.pk)
        ]
        assert events[0].actor_label == f"token {who}-token of {everyone[who].user.email}"
        assert str(events[0].source_ip) == IP
        assert AccessKey.objects.filter(pk=key.pk).values().get() != before
    else:
        assert_error(response, expected, {403: "forbidden", 404: "not_found"}[expected])
        assert events_since(mark) == []
        assert AccessKey.objects.filter(pk=key.pk).values().get() == before


@pytest.mark.parametrize(("who", "expected"), [*[(r, 201) for r in ROLES[:3]], ("auditor", 403)])
def test_it_lets_every_role_but_auditors_create_keys(everyone, tokens, who, expected):
    mark = audit_mark()
    response = call(tokens[who], "POST", "/keys", {"name": "ci-deploy"})
    if expected == 201:
        assert response.status_code == 201, response.content
        body = response.json()
        assert "no-store" in response["Cache-Control"]
        key = AccessKey.objects.get(pk=body["id"])
        assert key.org == everyone[who].org and key.created_via == "api"
        assert body["created_by"] == everyone[who].user.email
        assert len(body["secret_access_key"]) == 40
        events = events_since(mark)
        assert [(e.action, e.actor_type, e.target_id) for e in events] == [
            ("access_key.created", "api_token", key.pk)
        ]
        assert body["secret_access_key"] not in json.dumps(events[0].details)
    else:
        assert_error(response, 403, "forbidden")
        assert not AccessKey.objects.exists()
        assert events_since(mark) == []


def test_the_outsider_creates_keys_in_their_own_org_only(everyone, tokens):
    response = call(tokens["outsider"], "POST", "/keys", {"name": "laptop"})
    assert response.status_code == 201
    assert AccessKey.objects.get().org == everyone["outsider"].org


# --- Reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_every_member_lists_and_reads_their_orgs_keys_without_secrets(everyone, tokens, who):
    response = call(tokens["owner"], "POST", "/keys", {"name": "laptop"})
    secret, key_id = response.json()["secret_access_key"], response.json()["id"]
    foreign, _ = new_key(everyone["outsider"], "globex-key")

    listed = call(tokens[who], "GET", "/keys")
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [k["id"] for k in items] == [key_id]
    assert set(items[0]) == {
        "id",
        "name",
        "status",
        "created_at",
        "created_by",
        "created_via",
        "status_changed_at",
        "expires_at",
        "last_used_at",
        "replaces",
        "scope",
    }
    one = call(tokens[who], "GET", f"/keys/{key_id}")
    assert one.status_code == 200 and one.json()["name"] == "laptop"
    for response in (listed, one):
        assert secret not in response.content.decode()
    assert_error(call(tokens[who], "GET", f"/keys/{foreign.pk}"), 404, "not_found")


def test_the_outsider_sees_none_of_acmes_keys(everyone, tokens):
    key, _ = new_key(everyone["owner"])
    assert call(tokens["outsider"], "GET", "/keys").json()["items"] == []
    assert_error(call(tokens["outsider"], "GET", f"/keys/{key.pk}"), 404, "not_found")


@pytest.mark.parametrize("key_id", ["nope", "exc" + "A" * 17, "EXC" + "1" * 17, "EXC" + "A" * 30])
def test_it_answers_404_for_malformed_key_ids(tokens, key_id):
    assert_error(call(tokens["owner"], "GET", f"/keys/{key_id}"), 404, "not_found")
    assert_error(call(tokens["owner"], "DELETE", f"/keys/{key_id}"), 404, "not_found")


def test_it_filters_the_key_list_by_status_and_name_and_pages(everyone, tokens):
    owner = everyone["owner"]
    laptop, _ = new_key(owner, "laptop")
    new_key(owner, "ci-deploy")
    new_key(owner, "backup")
    deactivate_key(owner, Actor.for_user(owner.user), laptop)
    token = tokens["owner"]
    assert [k["name"] for k in call(token, "GET", "/keys?status=inactive").json()["items"]] == [
        "laptop"
    ]
    assert [k["name"] for k in call(token, "GET", "/keys?name=DEPLOY").json()["items"]] == [
        "ci-deploy"
    ]
    first = call(token, "GET", "/keys?limit=2").json()
    assert [k["name"] for k in first["items"]] == ["backup", "ci-deploy"]
    rest = call(token, "GET", f"/keys?limit=2&after={first['next_cursor']}").json()
    assert [k["name"] for k in rest["items"]] == ["laptop"] and rest["next_cursor"] is None
    assert_error(call(token, "GET", "/keys?after=garbage"), 422, "invalid")
    assert_error(call(token, "GET", "/keys?status=bogus"), 422, "validation_error")
    assert_error(call(token, "GET", "/keys?name=a%00b"), 422, "validation_error")
    forged = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|EXC\x00").decode()
    assert_error(call(token, "GET", f"/keys?after={forged.rstrip('=')}"), 422, "invalid")
    for query in ("actor=a%00", "target=a%00", "q=a%00"):
        assert_error(call(token, "GET", f"/audit/events?{query}"), 422, "validation_error")


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 200), ("admin", 200), ("auditor", 200), ("member", 403)]
)
def test_it_lets_owners_admins_and_auditors_read_the_audit_log(everyone, tokens, who, expected):
    key, _ = new_key(everyone["owner"], "laptop")
    new_key(everyone["outsider"], "globex-key")
    response = call(tokens[who], "GET", "/audit/events?action=access_key.created")
    if expected == 403:
        assert_error(response, 403, "forbidden")
        return
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(e["action"], e["target_id"]) for e in items] == [("access_key.created", key.pk)]


def test_the_audit_list_takes_the_pages_filters(everyone, tokens):
    owner = everyone["owner"]
    laptop, _ = new_key(owner, "laptop")
    new_key(owner, "backup")
    token = tokens["owner"]
    by_target = call(token, "GET", "/audit/events?target=laptop").json()["items"]
    assert {e["target_id"] for e in by_target} == {laptop.pk}
    by_actor = call(token, "GET", "/audit/events?actor=owner@acme.test&q=backup").json()["items"]
    assert [e["details"]["name"] for e in by_actor] == ["backup"]
    page = call(token, "GET", "/audit/events?limit=1").json()
    older = call(token, "GET", f"/audit/events?limit=1&before={page['next_cursor']}").json()
    assert older["items"][0]["seq"] < page["items"][0]["seq"]
    today = "2026-01-02"
    assert call(token, "GET", f"/audit/events?from={today}&to={today}").json()["items"] == []
    assert_error(
        call(token, "GET", "/audit/events?from=2026-02-02&to=2026-01-01"), 422, "validation_error"
    )
    assert_error(call(token, "GET", "/audit/events?action=nope"), 422, "validation_error")
    assert_error(call(token, "GET", "/audit/events?from=yesterday"), 422, "validation_error")


@pytest.mark.parametrize("who", [*ROLES, "outsider"])
def test_config_names_the_s3_endpoint_and_the_tokens_member(everyone, tokens, who, settings):
    settings.EXCLOUD_S3_ENDPOINT = "https://s3.example.test"
    body = call(tokens[who], "GET", "/config").json()
    assert body["s3_endpoint"] == "https://s3.example.test"
    assert body["region"] == settings.EXCLOUD_S3_REGION
    assert body["org"]["slug"] == everyone[who].org.slug
    assert body["user"] == everyone[who].user.email and body["role"] == everyone[who].role
    token = ApiToken.objects.get(user=everyone[who].user, name=f"{who}-token")
    assert body["token"] == {
        "name": f"{who}-token",
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat().replace("+00:00", "Z")
        if token.expires_at
        else None,
    }


# --- Errors --------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/config"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("GET", "/keys/EXCAAAAAAAAAAAAAAAAA"),
    ("PATCH", "/keys/EXCAAAAAAAAAAAAAAAAA"),
    ("DELETE", "/keys/EXCAAAAAAAAAAAAAAAAA"),
    ("POST", "/keys/EXCAAAAAAAAAAAAAAAAA/deactivate"),
    ("POST", "/keys/EXCAAAAAAAAAAAAAAAAA/reactivate"),
    ("GET", "/audit/events"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_it_answers_401_without_a_valid_token(everyone, tokens, method, path):
    owner = everyone["owner"]
    revoked = create_api_token(owner, Actor.for_user(owner.user), "old")
    revoke_api_token(owner, Actor.for_user(owner.user), revoked.token)
    for token in (None, "exc_" + "x" * 40, "not-a-token", revoked.plaintext):
        response = call(token, method, path, {"name": "x"})
        assert_error(response, 401, "unauthorized")
        assert response["WWW-Authenticate"].startswith("Bearer")
    session = Client(HTTP_HOST="127.0.0.1")
    session.force_login(owner.user)
    assert session.get(f"/api/v1{path}").status_code in (401, 405)
    assert not AccessKey.objects.exists()


def test_using_a_revoked_token_is_audited(everyone):
    owner = everyone["owner"]
    revoked = create_api_token(owner, Actor.for_user(owner.user), "old")
    revoke_api_token(owner, Actor.for_user(owner.user), revoked.token)
    mark = audit_mark()
    assert call(revoked.plaintext, "GET", "/keys").status_code == 401
    events = events_since(mark)
    assert [(e.action, e.org_id, e.details["reason"]) for e in events] == [
        ("api_token.rejected", owner.org_id, "revoked")
    ]


def test_it_answers_409_for_a_taken_name_and_a_wrong_state(everyone, tokens):
    key, _ = new_key(everyone["owner"], "laptop")
    new_key(everyone["owner"], "backup")
    token = tokens["owner"]
    mark = audit_mark()
    assert_error(call(token, "POST", "/keys", {"name": "LAPTOP"}), 409, "name_taken")
    assert_error(call(token, "PATCH", f"/keys/{key.pk}", {"name": "backup"}), 409, "name_taken")
    assert_error(call(token, "POST", f"/keys/{key.pk}/reactivate"), 409, "invalid_state")
    assert call(token, "DELETE", f"/keys/{key.pk}").status_code == 200
    mark = audit_mark()
    assert_error(call(token, "DELETE", f"/keys/{key.pk}"), 409, "invalid_state")
    assert_error(call(token, "PATCH", f"/keys/{key.pk}", {"name": "x"}), 409, "invalid_state")
    assert events_since(mark) == []


def test_renaming_to_the_same_name_changes_and_records_nothing(everyone, tokens):
    key, _ = new_key(everyone["owner"], "laptop")
    mark = audit_mark()
    response = call(tokens["owner"], "PATCH", f"/keys/{key.pk}", {"name": " laptop "})
    assert response.status_code == 200 and response.json()["name"] == "laptop"
    assert events_since(mark) == []


@pytest.mark.parametrize(
    ("body", "raw", "status", "code"),
    [
        ({"name": ""}, None, 422, "invalid"),
        ({"name": "   "}, None, 422, "invalid"),
        ({"name": "<script>"}, None, 422, "invalid"),
        ({"name": "x" * 65}, None, 422, "invalid"),
        ({"name": "x" * 1000}, None, 422, "validation_error"),
        ({"name": 12}, None, 422, "validation_error"),
        ({"name": None}, None, 422, "validation_error"),
        ({}, None, 422, "validation_error"),
        (None, '["name"]', 422, "validation_error"),
        (None, "{not json", 400, "bad_request"),
        (None, "\x00", 400, "bad_request"),
    ],
)
def test_it_answers_4xx_for_bad_input_and_changes_nothing(tokens, body, raw, status, code):
    mark = audit_mark()
    assert_error(call(tokens["owner"], "POST", "/keys", body, raw=raw), status, code)
    assert not AccessKey.objects.exists()
    assert events_since(mark) == []


def test_validation_errors_name_the_field(tokens):
    body = call(tokens["owner"], "POST", "/keys", {}).json()
    assert body["message"] == "name: Field required"
    assert body["details"] == [{"loc": ["body", "body", "name"], "msg": "Field required"}]


@pytest.fixture
def clock(settings, throttle_clock) -> FrozenClock:
    """The rate limiter's clock (stopped for every test by conftest), ten seconds into a
    minute's window."""
    settings.EXCLOUD_API_RATE_WINDOW = 60
    assert throttle_clock.now % 60 == 10
    return throttle_clock


def test_it_rate_limits_each_token(everyone, tokens, settings, clock):
    settings.EXCLOUD_API_RATE_LIMIT = 3
    for _ in range(3):
        assert call(tokens["owner"], "GET", "/keys").status_code == 200
    response = call(tokens["owner"], "GET", "/keys")
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "50"
    # The limit is per token: another member's token still works.
    assert call(tokens["admin"], "GET", "/keys").status_code == 200


def test_it_counts_calls_per_token_per_window(everyone, tokens, settings, clock):
    settings.EXCLOUD_API_RATE_LIMIT = 5
    assert [call(tokens["owner"], "GET", "/keys").status_code for _ in range(7)] == [
        200,
        200,
        200,
        200,
        200,
        429,
        429,
    ]
    # Refused calls change nothing: a POST past the limit creates no key.
    assert_error(call(tokens["owner"], "POST", "/keys", {"name": "late"}), 429, "rate_limited")
    assert not AccessKey.objects.filter(name="late").exists()
    clock.now += 49
    assert call(tokens["owner"], "GET", "/keys")["Retry-After"] == "1"
    # The next window starts afresh for this token; the others never ran out.
    clock.now += 1
    assert call(tokens["owner"], "GET", "/keys").status_code == 200
    for who in ("admin", "member", "auditor"):
        assert [call(tokens[who], "GET", "/keys").status_code for _ in range(5)] == [200] * 5
        assert call(tokens[who], "GET", "/keys").status_code == 429


def test_unknown_api_paths_answer_json_404(tokens):
    assert_error(call(tokens["owner"], "GET", "/nothing/here"), 404, "not_found")


def test_openapi_document_is_served(client):
    response = client.get("/api/v1/openapi.json", HTTP_HOST="127.0.0.1")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        "/api/v1/keys",
        "/api/v1/keys/{key_id}",
        "/api/v1/audit/events",
        "/api/v1/config",
    } <= set(paths)


def test_the_key_status_enum_matches_the_model():
    from keys.api import Status

    assert set(Status.__args__) == set(KeyStatus.values)
