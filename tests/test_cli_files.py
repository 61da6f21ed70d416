"""The `exc` command's own files: the INI editor that rewrites the AWS files, and the
config folder, symlinks and login file it refuses to trust."""

from __future__ import annotations

import json
import os

import pytest

from exc_cli.files import set_section
from tests.cli_support import (
    CONFIG_ANSWER,
    ENDPOINT,
    EXISTING_CONFIG,
    EXISTING_CREDENTIALS,
    GOOD_TOKEN,
    KEY_ID,
    S3_BLOCK,
    SECRET,
    a_key,
    mode,
    run,
)

# --- The INI editor ------------------------------------------------------------------------


def test_it_replaces_one_sections_keys_and_keeps_everything_else():
    updated = set_section(
        EXISTING_CONFIG, "profile excloud", {"region": "us-east-1", "endpoint_url": ENDPOINT}
    )
    assert updated == EXISTING_CONFIG.replace("region = old-region", "region = us-east-1").replace(
        "endpoint_url = http://old.example", f"endpoint_url = {ENDPOINT}"
    )


def test_it_appends_missing_keys_at_the_end_of_the_section():
    updated = set_section(EXISTING_CONFIG, "profile work", {"endpoint_url": ENDPOINT})
    assert "    addressing_style = path\nendpoint_url = https://s3.excloud.test\n\n" in updated
    assert updated.replace(f"endpoint_url = {ENDPOINT}\n", "", 1) == EXISTING_CONFIG


def test_it_writes_a_nested_block_in_place_of_the_old_one():
    block = {"addressing_style": "path", "signature_version": "s3v4"}
    updated = set_section(EXISTING_CONFIG, "profile work", {"s3": block})
    assert f"[profile work]\nregion = us-west-2\n{S3_BLOCK}\n[profile excloud]" in updated
    assert updated.count("addressing_style") == 1


def test_it_replaces_a_key_with_its_continuation_lines():
    updated = set_section(EXISTING_CONFIG, "profile work", {"s3": "x"})
    assert "s3 = x\n\n; work account" not in updated
    assert "[profile work]\nregion = us-west-2\ns3 = x\n\n[profile excloud]" in updated
    assert "addressing_style" not in updated


def test_it_appends_a_missing_section_after_a_blank_line():
    updated = set_section(EXISTING_CREDENTIALS, "excloud", {"aws_access_key_id": KEY_ID})
    assert updated == EXISTING_CREDENTIALS + f"\n[excloud]\naws_access_key_id = {KEY_ID}\n"
    assert set_section("", "x", {"a": "1"}) == "[x]\na = 1\n"
    assert set_section("[y]\nb = 2", "x", {"a": "1"}) == "[y]\nb = 2\n\n[x]\na = 1\n"


def test_it_writes_only_the_first_of_duplicate_keys_and_sections():
    text = "[p]\na = 1\na = 2\n[p]\na = 3\n"
    assert set_section(text, "p", {"a": "9"}) == "[p]\na = 9\n[p]\na = 3\n"


def test_it_matches_section_names_ignoring_extra_spaces():
    text = "[ profile   excloud ]\nregion = x\n"
    assert set_section(text, "profile excloud", {"region": "y"}) == (
        "[ profile   excloud ]\nregion = y\n"
    )


# --- A careful client, with its own files ---------------------------------------------------


def test_a_planted_symlink_is_replaced_not_written_through(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    hostile.answers["/keys"] = (201, {**a_key(), "secret_access_key": SECRET})
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    for name in ("config.json", "keys.json"):
        (elsewhere / name).write_text("theirs\n")
        (folder / name).symlink_to(elsewhere / name)

    assert run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url).exit_code == 0
    assert run("buckets", "keys", "create", "laptop").exit_code == 0

    for name in ("config.json", "keys.json"):
        assert (elsewhere / name).read_text() == "theirs\n"
        assert not (folder / name).is_symlink() and mode(folder / name) == 0o600
    assert json.loads((folder / "config.json").read_text())["token"] == GOOD_TOKEN
    assert SECRET in (folder / "keys.json").read_text()


def test_a_symlinked_config_folder_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    elsewhere = home / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / ".config").mkdir()
    (home / ".config" / "exc").symlink_to(elsewhere)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1 and "it is a symlink" in result.output
    assert list(elsewhere.iterdir()) == []


def test_a_config_folder_others_may_write_to_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1
    assert result.output == (
        f"exc: error: refusing to write in {folder}: others may write to it "
        f"(run `chmod go-w {folder}`)\n"
    )
    assert list(folder.iterdir()) == []
    folder.chmod(0o700)
    assert run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url).exit_code == 0


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_config_folder_owned_by_someone_else_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder, 65534, 65534)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1 and "belongs to another user" in result.output
    assert list(folder.iterdir()) == []


def test_a_linked_aws_config_stays_linked_when_its_target_folder_is_safe(portal, home):
    dotfiles = home / "dotfiles"
    dotfiles.mkdir(mode=0o700)
    (dotfiles / "aws-config").write_text(EXISTING_CONFIG)
    (home / "aws").mkdir(mode=0o700)
    (home / "aws" / "config").symlink_to(dotfiles / "aws-config")
    result = run("buckets", "keys", "configure", KEY_ID, "--profile", "excloud", "--secret", SECRET)
    assert result.exit_code == 0, result.output
    assert (home / "aws" / "config").is_symlink()
    assert f"endpoint_url = {ENDPOINT}" in (dotfiles / "aws-config").read_text()

    dotfiles.chmod(0o777)
    refused = run("buckets", "keys", "configure", KEY_ID, "--profile", "x", "--secret", SECRET)
    assert refused.exit_code == 1 and "others may write to it" in refused.output


def test_a_planted_login_file_is_not_read(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    monkeypatch.delenv("EXC_API_URL")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    planted = home / "planted.json"
    planted.write_text(json.dumps({"api_url": hostile.url, "token": GOOD_TOKEN}))
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "config.json").symlink_to(planted)
    result = run("whoami")
    assert result.exit_code == 3 and "not logged in" in result.output
    assert hostile.seen == []
