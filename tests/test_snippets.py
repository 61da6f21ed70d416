"""Credential snippets: each one, as the browser would download it, works with the real tool.

The text of every snippet is taken from the HTML of the creation response the way a
browser's Blob gets it (the element's text, entities decoded, the profile span replaced as
the page's script does when someone edits the name), written to disk and used with
aws-cli, boto3, rclone and bash against the gateway on the test database.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import uuid
from html.parser import HTMLParser
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from accounts.tokens import create_api_token
from audit.trail import Actor
from keys import snippets
from keys.models import AccessKey, KeyStatus
from keys.services import revoke_key
from tests.conftest import client_for, new_key
from tests.gateway_stack import BIN, RCLONE, gateway

SECRET_RE = re.compile(
    r'<code id="new-secret-access-key" class="secret">([A-Za-z0-9+/]{40})</code>'
)
ALL_KINDS = [name for _, _, names in snippets.TABS for name in names]
# ~/.aws/config holds the endpoint and region; the key pair goes in ~/.aws/credentials.
WITH_PAIR = [name for name in ALL_KINDS if name != "aws_config"]
PROFILE = "nightly.backup"
TOOL_TIMEOUT = 120


class SnippetTexts(HTMLParser):
    """The text of each ``<code id="snippet-NAME">`` as ``element.textContent`` gives it;
    with ``profile``, each ``[data-profile]`` span holds that name, as after an edit."""

    def __init__(self, profile: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.profile = profile
        self.texts: dict[str, str] = {}
        self.filenames: dict[str, str] = {}
        self._name: str | None = None
        self._depth = 0
        self._profile_depth: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if self._name is None:
            element_id = attributes.get("id") or ""
            if tag == "code" and element_id.startswith("snippet-"):
                self._name = element_id.removeprefix("snippet-")
                self.texts[self._name] = ""
                self.filenames[self._name] = attributes.get("data-filename") or ""
                self._depth = 0
            return
        self._depth += 1
        if "data-profile" in attributes and self.profile is not None:
            self._profile_depth = self._depth
            self.texts[self._name] += self.profile

    def handle_endtag(self, tag: str) -> None:
        if self._name is None:
            return
        if self._depth == 0:
            self._name = None
            return
        if self._depth == self._profile_depth:
            self._profile_depth = None
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._name is not None and self._profile_depth is None:
            self.texts[self._name] += data


def snippet_texts(html: str, profile: str | None = None) -> SnippetTexts:
    parser = SnippetTexts(profile)
    parser.feed(html)
    parser.close()
    return parser


def create_through_the_dashboard(client: Client, name: str = "laptop", htmx: bool = True):
    """Create a key as the browser does; returns (key ID, secret, creation page HTML)."""
    headers = {"HX-Request": "true", "HX-Target": "create-panel"} if htmx else {}
    response = client.post(reverse("key_create", args=["acme"]), {"name": name}, headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    secret = SECRET_RE.search(html).group(1)
    key_id = AccessKey.objects.get(name=name).pk
    return key_id, secret, html


# -- The pages -------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_it_puts_every_snippet_with_the_secret_in_the_creation_response(owner_client, htmx):
    key_id, secret, html = create_through_the_dashboard(owner_client, htmx=htmx)
    page = snippet_texts(html)

    assert sorted(page.texts) == sorted(ALL_KINDS)
    for name in ALL_KINDS:
        expected = snippets.render(name, key_id, secret)
        assert page.texts[name] == expected.text(), name
        assert page.filenames[name] == expected.filename
        assert snippets.SECRET_PLACEHOLDER not in page.texts[name]
        assert f'data-download="snippet-{name}"' in html
    for name in WITH_PAIR:
        assert key_id in page.texts[name] and secret in page.texts[name], name
    # Without JavaScript every panel is shown: none is hidden in the markup.
    assert html.count('role="tabpanel"') == len(snippets.TABS)
    assert not re.search(r'role="tabpanel"[^>]*\bhidden\b', html)
    assert f"{key_id}_accessKeys.csv" in html


def test_it_puts_the_edited_profile_name_everywhere_the_aws_files_use_it(owner_client):
    key_id, secret, html = create_through_the_dashboard(owner_client)
    edited = snippet_texts(html, PROFILE).texts

    assert edited["aws_credentials"].startswith(f"[{PROFILE}]\n")
    assert edited["aws_config"].startswith(f"[profile {PROFILE}]\n")
    for name in ALL_KINDS:
        assert edited[name] == snippets.render(name, key_id, secret).text(PROFILE)
    assert 'data-profile=""' in html and 'id="snippet-profile"' in html


def test_it_shows_placeholders_and_never_the_secret_on_the_detail_page(owner_client):
    key_id, secret, _ = create_through_the_dashboard(owner_client)

    response = owner_client.get(reverse("key_detail", args=["acme", key_id]))

    html = response.content.decode()
    assert secret not in html
    page = snippet_texts(html)
    assert sorted(page.texts) == sorted([*ALL_KINDS, "exc-configure"])
    for name in ALL_KINDS:
        assert page.texts[name] == snippets.render(name, key_id).text(), name
    for name in WITH_PAIR:
        assert key_id in page.texts[name]
        assert snippets.SECRET_PLACEHOLDER in page.texts[name], name
    assert page.texts["exc-configure"] == f"exc buckets keys configure {key_id} --profile excloud"
    assert snippet_texts(html, PROFILE).texts["exc-configure"].endswith(f"--profile {PROFILE}")
    assert "&lt;your secret access key&gt;" in html


def test_it_offers_no_snippets_for_a_revoked_key(owner):
    key, _ = new_key(owner)
    revoke_key(owner, Actor.for_user(owner.user), key, "gone")

    response = client_for(owner).get(reverse("key_detail", args=["acme", key.pk]))

    assert AccessKey.objects.get(pk=key.pk).status == KeyStatus.REVOKED
    assert response.status_code == 200
    assert 'id="snippet-' not in response.content.decode()


def test_it_takes_endpoint_and_region_from_settings_into_every_snippet(owner: Membership, settings):
    settings.EXCLOUD_S3_ENDPOINT = "https://s3.eu.excloud.example:8443"
    settings.EXCLOUD_S3_REGION = "eu-central-7"
    key_id, secret, html = create_through_the_dashboard(client_for(owner))
    texts = snippet_texts(html).texts
    token = create_api_token(owner, Actor.for_user(owner.user), "config").plaintext
    api = Client().get("/api/v1/config", headers={"Authorization": f"Bearer {token}"}).json()

    assert (api["s3_endpoint"], api["region"]) == (settings.EXCLOUD_S3_ENDPOINT, "eu-central-7")
    for name in ALL_KINDS:
        if name in ("aws_credentials", "csv"):  # these hold only the key pair
            continue
        assert settings.EXCLOUD_S3_ENDPOINT in texts[name], name
        assert "eu-central-7" in texts[name], name
    assert "127.0.0.1:9000" not in html
    assert "us-east-1" not in html
    config = texts["aws_config"]
    assert "endpoint_url = https://s3.eu.excloud.example:8443\n" in config
    assert "region = eu-central-7\n" in config


def test_it_quotes_what_a_shell_or_python_would_misread(owner):
    key, _ = new_key(owner)

    env = snippets.render("env", key.pk).text()
    boto = snippets.render("boto3", key.pk).text()

    # Unquoted, "<your ..." would be a redirection in the sourced env file.
    assert "AWS_SECRET_ACCESS_KEY='<your secret access key>'\n" in env
    assert 'aws_secret_access_key="<your secret access key>",' in boto
    compile(boto, "excloud_list_buckets.py", "exec")


# -- The real tools against the gateway ------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


@pytest.fixture
def shown(gw, owner, settings):
    """A key made through the dashboard with the snippets pointing at the test gateway, and
    a bucket it made, so that listing shows something: (key ID, secret, HTML, bucket)."""
    settings.EXCLOUD_S3_ENDPOINT = gw.url
    key_id, secret, html = create_through_the_dashboard(client_for(owner))
    bucket = "snip-" + uuid.uuid4().hex[:12]
    s3 = boto3.client(
        "s3",
        endpoint_url=gw.url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=settings.EXCLOUD_S3_REGION,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    s3.create_bucket(Bucket=bucket)
    return key_id, secret, html, bucket


def write_snippets(html: str, directory: Path, profile: str | None = None) -> dict[str, Path]:
    """Save each snippet under its download name, as the browser's Download button does."""
    page = snippet_texts(html, profile)
    paths = {}
    for name, text in page.texts.items():
        path = directory / page.filenames[name]
        path.write_text(text)
        paths[name] = path
    return paths


def run(args: list[str], cwd: Path, **env: str) -> str:
    """Run a tool with a clean environment: only PATH, HOME (empty) and what is given."""
    clean = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), **env}
    result = subprocess.run(
        args, cwd=cwd, env=clean, capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


real_tools = pytest.mark.django_db(transaction=True)


@real_tools
def test_aws_cli_lists_buckets_with_the_config_and_credentials_files(shown, tmp_path):
    key_id, _, html, bucket = shown
    files = write_snippets(html, tmp_path, profile=PROFILE)
    assert files["aws_credentials"].name == "credentials"
    assert files["aws_config"].name == "config"

    listing = run(
        [str(BIN / "aws"), "--profile", PROFILE, "s3", "ls"],
        tmp_path,
        AWS_CONFIG_FILE=str(files["aws_config"]),
        AWS_SHARED_CREDENTIALS_FILE=str(files["aws_credentials"]),
    )

    assert bucket in listing.split()
    # The edited name is the one in the files: the default name is not there.
    with pytest.raises(AssertionError, match=r"profile \(excloud\) could not be found"):
        run(
            [str(BIN / "aws"), "--profile", "excloud", "s3", "ls"],
            tmp_path,
            AWS_CONFIG_FILE=str(files["aws_config"]),
            AWS_SHARED_CREDENTIALS_FILE=str(files["aws_credentials"]),
        )


@real_tools
def test_the_boto3_example_lists_buckets(shown, tmp_path):
    _, _, html, bucket = shown
    files = write_snippets(html, tmp_path)

    output = run([str(BIN / "python"), files["boto3"].name], tmp_path)

    assert output.splitlines() == [bucket]


@real_tools
def test_rclone_lists_buckets_with_the_rclone_conf(shown, tmp_path):
    _, _, html, bucket = shown
    files = write_snippets(html, tmp_path)
    assert files["rclone"].name == "rclone.conf"

    listing = run([RCLONE, "--config", str(files["rclone"]), "lsd", "excloud:"], tmp_path)

    assert [line.split()[-1] for line in listing.splitlines()] == [bucket]


@real_tools
def test_aws_cli_lists_buckets_with_the_env_file_sourced(shown, tmp_path):
    _, _, html, bucket = shown
    write_snippets(html, tmp_path)
    # No AWS files anywhere: HOME is the empty test directory.
    assert not (tmp_path / ".aws").exists()

    listing = run(["bash", "-c", "set -a; . ./excloud.env; aws s3 ls"], tmp_path)
    exported = run(["bash", "-c", ". ./excloud.sh; aws s3 ls"], tmp_path)

    assert bucket in listing.split()
    assert bucket in exported.split()


@real_tools
def test_the_csv_and_the_kubernetes_secret_read_back_to_the_same_pair(shown, tmp_path, settings):
    key_id, secret, html, _ = shown
    files = write_snippets(html, tmp_path)

    rows = list(csv.reader(io.StringIO(files["csv"].read_text())))
    manifest = yaml.safe_load(files["kubernetes"].read_text())

    assert files["csv"].name == f"{key_id}_accessKeys.csv"
    assert rows == [["Access key ID", "Secret access key"], [key_id, secret]]
    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Secret"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    assert manifest["stringData"] == {
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": settings.EXCLOUD_S3_REGION,
        "AWS_ENDPOINT_URL": settings.EXCLOUD_S3_ENDPOINT,
    }
    # The same pair works with the endpoint the manifest names.
    s3 = boto3.client(
        "s3",
        endpoint_url=manifest["stringData"]["AWS_ENDPOINT_URL"],
        aws_access_key_id=rows[1][0],
        aws_secret_access_key=rows[1][1],
        region_name=manifest["stringData"]["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    assert s3.list_buckets()["Buckets"]


def test_every_download_has_a_file_name_a_type_and_a_place(owner):
    key, _ = new_key(owner)
    names = set()
    for tab in snippets.tabs(key.pk):
        for snippet in tab.snippets:
            assert snippet.filename and "/" not in snippet.filename
            assert re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", snippet.kind.mime)
            assert snippet.kind.where
            names.add(snippet.filename)
    assert len(names) == len(ALL_KINDS)
    assert os.path.splitext(snippets.render("boto3", key.pk).filename)[1] == ".py"
