from __future__ import annotations

import re

from keys.models import AccessKey


def test_it_creates_a_key_and_shows_the_secret_once(owner, owner_client):
    page = owner_client.get("/orgs/acme/keys/")
    assert page.status_code == 200
    token = re.search(rb'name="creation_token" value="([^"]+)"', page.content).group(1).decode()
    r = owner_client.post("/orgs/acme/keys/new/", {"name": "laptop", "creation_token": token})
    assert r.status_code == 200
    key = AccessKey.objects.get()
    secret = re.search(rb'id="new-secret-access-key" class="secret">([^<]+)<', r.content).group(1)
    assert re.fullmatch(rb"[A-Za-z0-9+/]{40}", secret)
    assert "no-store" in r["Cache-Control"]
    again = owner_client.post("/orgs/acme/keys/new/", {"name": "laptop", "creation_token": token})
    assert AccessKey.objects.count() == 1
    assert secret not in again.content
    assert key.pk.encode() in owner_client.get("/orgs/acme/keys/").content
