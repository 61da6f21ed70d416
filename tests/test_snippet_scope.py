"""The scope comment in each credential snippet: there, one line, and harmless to the
format, whatever a prefix holds (the real tools' use of the snippets is in test_snippets)."""

from __future__ import annotations

import configparser
import csv
import io
import re
import subprocess

import pytest
import yaml

from keys import snippets
from keys.scope import Scope

KEY_ID = "EXCABCDEFGHIJKLMNOPQ"
SECRET = "abcdefghijABCDEFGHIJ0123456789+/abcdefgh"
# Everything a prefix may hold that a format might misread: quotes and triple quotes,
# comment and section characters, shell expansions, template syntax, the profile marker,
# and characters that other readers take for line ends or that reorder text.
HOSTILE = 'a"""\'b # ; [x] $(touch p) `id` {{ secret }} \ue000 \x85 \u2028 \u202e/'
SCOPES = {
    "default": Scope(),
    "read-only": Scope.build(
        permission="read-only", buckets=[("logs", "app/")], networks=["10.0.0.0/8"]
    ),
    "hostile": Scope.build(
        permission="read-write",
        buckets=[("logs", HOSTILE), "backups"],
        networks=["2001:db8::/32", "192.0.2.7"],
    ),
}
ENV_LINE = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def texts(scope: Scope) -> dict[str, str]:
    return {
        name: snippets.render(name, KEY_ID, SECRET, scope).text("excloud")
        for _, _, names in snippets.TABS
        for name in names
    }


def comment_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.lstrip().startswith("# Scope: ")]


@pytest.mark.parametrize("which", SCOPES)
def test_every_snippet_but_the_csv_says_the_scope_in_one_comment_line(which):
    scope = SCOPES[which]
    for name, text in texts(scope).items():
        if name == "csv":
            assert "Scope" not in text
            continue
        [line] = comment_lines(text)
        assert line == "# " + snippets.comment_text(scope), name
        # No reader splits it further: Python's str.splitlines also breaks at NEL and
        # U+2028, and a bidirectional override would make the line read otherwise.
        assert text.splitlines() == text.split("\n")[:-1], name
        assert not any(ch in line for ch in "\x85\u2028\u202e\ue000"), name
    assert comment_lines(texts(SCOPES["read-only"])["env"]) == [
        "# Scope: read-only on logs/app/*, from 10.0.0.0/8"
    ]


@pytest.mark.parametrize("which", SCOPES)
def test_each_snippet_still_parses_as_its_format(which, tmp_path):
    found = texts(SCOPES[which])

    for name, section in (("aws_credentials", "excloud"), ("rclone", "excloud")):
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(found[name])
        assert ini.sections() == [section], name
        assert not any("Scope" in k or "Scope" in v for k, v in ini[section].items()), name
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(found["aws_config"])
    assert config.sections() == ["profile excloud"]
    assert set(config["profile excloud"]) == {"region", "endpoint_url", "s3"}
    credentials = configparser.ConfigParser(interpolation=None)
    credentials.read_string(found["aws_credentials"])
    assert dict(credentials["excloud"]) == {
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
    }

    code = compile(found["boto3"], "excloud_list_buckets.py", "exec")
    assert "boto3" in code.co_names

    env_lines = [line for line in found["env"].split("\n") if line]
    assert env_lines[0].startswith("# Scope: ")
    assert all(ENV_LINE.match(line) for line in env_lines[1:]), env_lines

    # bash reads the shell snippet and sets exactly the four variables, running nothing.
    script = tmp_path / "excloud.sh"
    script.write_text(
        found["shell"] + 'printf "%s\\n" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"\n'
    )
    ran = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert ran.returncode == 0 and ran.stdout == f"{KEY_ID}\n{SECRET}\n", ran.stderr
    assert not (tmp_path / "p").exists()

    secret = yaml.safe_load(found["kubernetes"])
    assert secret["kind"] == "Secret" and set(secret["stringData"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    }
    assert list(csv.reader(io.StringIO(found["csv"]))) == [
        ["Access key ID", "Secret access key"],
        [KEY_ID, SECRET],
    ]


def test_the_page_html_keeps_the_comment_escaped_and_the_profile_marker_out():
    [tab] = [t for t in snippets.tabs(KEY_ID, scope=SCOPES["hostile"]) if t.name == "env"]
    html = tab.snippets[0].html()
    # The prefix's private-use character is written as an escape, so it never becomes an
    # editable profile name; the quotes are HTML-escaped.
    assert html.count("data-profile") == 0
    assert "\\ue000" in html and "&quot;&quot;&quot;" in html
