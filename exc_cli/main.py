"""exc: Excloud access keys from a terminal.

exc login
exc login --token exc_…
exc buckets keys create laptop
exc buckets keys list
exc buckets keys configure EXC… --profile excloud
exc buckets keys rotate EXC… --profile excloud --overlap 24h
exc buckets keys delete EXC…
exc whoami
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import webbrowser
from importlib import metadata
from typing import Any

import click
from click.shell_completion import get_completion_class

from . import files
from .client import DEFAULT_API_URL, EXIT_AUTH, EXIT_ERROR, Api, ExcError
from .device import DeviceLogin

ACCESS_KEY_ID_RE = re.compile(r"^EXC[A-Z2-7]{17}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9+/]{40}$")
PROFILE_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
# What may go into an INI value from the server: no spaces, newlines or brackets.
INI_VALUE_RE = re.compile(r"^[A-Za-z0-9:/._~%?&=+-]{1,500}$")
# An Excloud API token's shape; anything else is refused before it is sent or shown.
TOKEN_RE = re.compile(r"^exc_[A-Za-z0-9]{1,200}$")
# Anything that looks like a token, wherever it turns up in a message.
TOKEN_IN_TEXT_RE = re.compile(r"exc_[A-Za-z0-9]+")
OVERLAP_RE = re.compile(r"^([0-9]{1,4})\s*(h|d)?$")
MAX_OVERLAP_HOURS = 720
# Paging gives up after this many pages (500 keys each) or when a cursor comes back.
MAX_PAGES = 200
DISTRIBUTION = "excloud-portal"
VERSION_MESSAGE = "%(prog)s %(version)s"
CONTEXT = {"help_option_names": ["-h", "--help"]}


def printable(value: Any) -> str:
    """The text with control and formatting characters (escape sequences, bidirectional
    overrides, newlines) written as visible escapes, so the portal's text cannot drive
    the terminal."""
    text = str(value)
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def redact(text: str) -> str:
    return TOKEN_IN_TEXT_RE.sub("exc_…", text)


def _checked_token(token: str, source: str) -> str:
    token = token.strip()
    if not TOKEN_RE.match(token):
        # Never the value, not even in part: it may be a real token with a stray character.
        raise ExcError(
            f"{source} is not an Excloud API token (exc_ followed by letters and digits)",
            EXIT_AUTH,
        )
    return token


def _login() -> tuple[str, str]:
    stored = files.read_json(files.login_path())
    url = os.environ.get("EXC_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    if os.environ.get("EXC_TOKEN"):
        return url, _checked_token(os.environ["EXC_TOKEN"], "EXC_TOKEN")
    token = stored.get("token")
    if not token:
        raise ExcError(
            "not logged in: run `exc login` (approve it in the browser), or "
            "`exc login --token exc_…` with a token from the portal's API tokens page, "
            "or set EXC_TOKEN",
            EXIT_AUTH,
        )
    return url, _checked_token(str(token), f"the token in {files.login_path()}")


def _api() -> Api:
    url, token = _login()
    return Api(url, token)


def _key_id(value: str) -> str:
    key_id = value.strip().upper()
    if not ACCESS_KEY_ID_RE.match(key_id):
        raise ExcError(f"{value!r} is not an access key ID (EXC followed by 17 characters)")
    return key_id


def _store() -> dict[str, Any]:
    data = files.read_json(files.key_store_path())
    keys = data.get("keys")
    return keys if isinstance(keys, dict) else {}


def _save_store(keys: dict[str, Any]) -> None:
    files.write_json(files.key_store_path(), {"keys": keys})


def _interactive() -> bool:
    return sys.stdin.isatty()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _fail(message: str, exit_code: int) -> None:
    click.echo(f"exc: error: {printable(redact(message))}", err=True)
    sys.exit(exit_code)


class Command(click.Group):
    """Turns every ExcError, OS error and unexpected answer into one line on stderr and an
    exit code; no token and no control character reaches that line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExcError as e:
            _fail(str(e), e.exit_code)
        except OSError as e:
            _fail(str(e), EXIT_ERROR)
        except (KeyError, TypeError, AttributeError, IndexError):
            # A portal answer without a field the command reads, or of another shape.
            _fail("the portal's answer was not what exc expects; is EXC_API_URL right?", EXIT_ERROR)


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


@click.group(cls=Command, context_settings=CONTEXT)
@click.version_option(_version(), "--version", "-V", prog_name="exc", message=VERSION_MESSAGE)
def cli() -> None:
    """Manage Excloud access keys from a terminal.

    Log in once with `exc login` (approve it in the browser) or an API token from the
    portal's API tokens page; EXC_TOKEN and EXC_API_URL override the stored login.
    Exit codes: 1 error, 2 usage, 3 token refused or not allowed, 4 not found, 5 the API
    could not be reached, 6 sign-in denied, 7 sign-in code expired or used.
    """


def _can_open_browser() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _device_token(url: str, device_name: str, open_browser: bool) -> str:
    flow = DeviceLogin(url)
    started = flow.start(device_name)
    click.echo(f"To sign in, open {printable(started.verification_uri)}", err=True)
    click.echo(f"and enter the code: {printable(started.user_code)}", err=True)
    if open_browser and _can_open_browser():
        with contextlib.suppress(Exception):
            webbrowser.open(started.verification_uri_complete)
    minutes = max(1, started.expires_in // 60)
    click.echo(f"Waiting for approval (the code expires in {minutes} minutes)…", err=True)
    granted = flow.wait(started)
    return _checked_token(granted.token, "the token the portal sent")


@cli.command(context_settings=CONTEXT)
@click.option("--token", default=None, help="An exc_… API token (for scripts); '-' reads stdin.")
@click.option("--api-url", default=None, help=f"The portal's URL (default {DEFAULT_API_URL}).")
@click.option(
    "--device-name", default=None, help="How the portal names this device (default: hostname)."
)
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
def login(
    token: str | None, api_url: str | None, device_name: str | None, no_browser: bool
) -> None:
    """Sign in and store a token in ~/.config/exc/config.json (mode 0600).

    Without --token, exc shows a URL and a short code, opens the browser when there is
    one, and waits while you sign in to the portal and approve this device for one of your
    organisations; the portal then issues an expiring API token named after the device.
    Exit codes: 6 denied in the browser, 7 the code expired or was already used.
    """
    url = (api_url or os.environ.get("EXC_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ExcError(f"{url!r} is not an http:// or https:// URL")
    if token == "-":
        token = sys.stdin.readline()
    if token is None:
        name = device_name or socket.gethostname() or "device"
        token = _device_token(url, name, open_browser=not no_browser)
    token = _checked_token(token, "that")
    me = Api(url, token).get("/config")
    files.write_json(files.login_path(), {"api_url": url, "token": token})
    org, user, role = (printable(v) for v in (me["org"]["name"], me["user"], me["role"]))
    click.echo(f"Logged in to {org} at {url} as {user} ({role}).")


@cli.command(context_settings=CONTEXT)
def whoami() -> None:
    """Who the token acts as, in which organisation, and when the token expires."""
    api = _api()
    me = api.get("/config")
    token = me.get("token") or {}
    expires = token.get("expires_at") if isinstance(token, dict) else None
    lines = [
        ("User", me["user"]),
        ("Organisation", f"{me['org']['name']} ({me['org']['slug']})"),
        ("Role", me["role"]),
        ("Portal", api.url),
        ("Token", token.get("name", "?") if isinstance(token, dict) else "?"),
        ("Token expires", f"{_when(expires)} UTC" if expires else "never"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<15}{printable(value)}")


@cli.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: eval "$(exc completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(exc completion zsh)"    (in ~/.zshrc)
    fish: exc completion fish > ~/.config/fish/completions/exc.fish
    """
    completer = get_completion_class(shell)
    assert completer is not None  # click ships all three
    click.echo(completer(cli, {}, "exc", "_EXC_COMPLETE").source())


@cli.group(context_settings=CONTEXT)
def buckets() -> None:
    """Buckets and the access keys that reach them."""


@buckets.group(context_settings=CONTEXT)
def keys() -> None:
    """Create, list, configure and delete S3 access keys."""


@keys.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--name", "name_option", metavar="NAME", help="The key's name (or give it as NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the new key as JSON.")
def create(name: str | None, name_option: str | None, as_json: bool) -> None:
    """Create a key called NAME and print its ID and secret (shown this once).

    Give the name as an argument or with --name, not both. The pair is also kept in
    ~/.config/exc/keys.json (mode 0600) for `configure`.
    """
    if (name is None) == (name_option is None):
        raise click.UsageError("give the key's name once: `create NAME` or `create --name NAME`")
    name = name if name is not None else name_option
    api = _api()
    key = _new_key(api, api.request("POST", "/keys", json={"name": name}))
    _show_new_key(key, as_json)


def _new_key(api: Api, key: Any) -> dict[str, Any]:
    """A new key from the portal, checked and kept in the local store."""
    if not (
        isinstance(key, dict)
        and ACCESS_KEY_ID_RE.match(str(key.get("id")))
        and SECRET_RE.match(str(key.get("secret_access_key")))
    ):
        raise ExcError("the portal's answer was not a new access key")
    store = _store()
    store[key["id"]] = {
        "secret_access_key": key["secret_access_key"],
        "name": key.get("name"),
        "api_url": api.url,
    }
    _save_store(store)
    return key


def _show_new_key(key: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(
            {
                "access_key_id": key["id"],
                "secret_access_key": key["secret_access_key"],
                "name": key.get("name"),
                "created_at": key.get("created_at"),
            }
        )
    else:
        click.echo(f"ACCESS_KEY_ID: {key['id']}")
        click.echo(f"SECRET_ACCESS_KEY: {key['secret_access_key']}")


def _all_keys(api: Api, status: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = api.get("/keys", status=status, limit=500, after=cursor)
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise ExcError("the portal's list of keys was not what exc expects")
        items.extend(k for k in page["items"] if isinstance(k, dict))
        cursor = page.get("next_cursor")
        if not cursor:
            return items
        if not isinstance(cursor, str) or cursor in seen:
            raise ExcError("the portal sent the same page cursor twice; stopped listing")
        seen.add(cursor)
    raise ExcError(f"the portal sent more than {MAX_PAGES} pages of keys; stopped listing")


def _when(value: str | None) -> str:
    return str(value)[:16].replace("T", " ") if value else "never"


@keys.command("list", context_settings=CONTEXT)
@click.option(
    "--status",
    type=click.Choice(["active", "inactive", "revoked", "expired"]),
    help="Only keys in this state.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def list_keys(status: str | None, as_json: bool) -> None:
    """List the organisation's keys, newest first (never their secrets)."""
    items = _all_keys(_api(), status)
    if as_json:
        fields = ("id", "name", "status", "created_at", "created_by", "last_used_at")
        _print_json([{f: k.get(f) for f in fields} for k in items])
        return
    rows = [("ID", "NAME", "STATUS", "CREATED", "LAST USED")] + [
        tuple(
            printable(v)
            for v in (
                k["id"],
                k["name"],
                k["status"],
                _when(k["created_at"]),
                _when(k["last_used_at"]),
            )
        )
        for k in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys.command(context_settings=CONTEXT)
@click.argument("key_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(key_id: str, yes: bool) -> None:
    """Revoke the key ID: requests signed with it fail from now on. Cannot be undone."""
    key_id = _key_id(key_id)
    api = _api()
    if not yes:
        if not _interactive():
            raise ExcError(f"not deleting {key_id} without confirmation: pass --yes")
        key = api.request("GET", f"/keys/{key_id}")
        click.confirm(
            f"Revoke key {key_id} ({printable(key['name'])})? Requests signed with it will fail",
            abort=True,
        )
    key = api.request("DELETE", f"/keys/{key_id}")
    store = _store()
    if store.pop(key_id, None) is not None:
        _save_store(store)
    click.echo(f"Revoked {key_id} ({printable(key['name'])}). Requests signed with it now fail.")


@keys.command(context_settings=CONTEXT)
@click.argument("key_id", metavar="ID")
@click.option("--profile", required=True, help="The AWS profile to write, e.g. excloud.")
@click.option("--secret", help="The key's secret, if it is not in exc's local store.")
@click.option(
    "--set-default", is_flag=True, help="Also point the default profile at Excloud's endpoint."
)
def configure(key_id: str, profile: str, secret: str | None, set_default: bool) -> None:
    """Write key ID into an AWS profile, in ~/.aws/config and ~/.aws/credentials.

    The profile gets the portal's region and endpoint and an `s3 =` block (path-style
    addressing, Signature Version 4), replacing any `s3 =` block it had. Honours
    AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE; every other profile and comment in
    those files is kept as it was.
    """
    key_id = _key_id(key_id)
    _checked_profile(profile)
    if secret is None:
        secret = (_store().get(key_id) or {}).get("secret_access_key")
        if not secret:
            raise ExcError(
                f"no secret for {key_id}: exc keeps secrets only for keys created with "
                f"`exc buckets keys create` on this machine ({files.key_store_path()}). "
                "Pass it with --secret, or create a new key with `exc buckets keys create NAME`"
            )
    secret = secret.strip()
    if not SECRET_RE.match(secret):
        raise ExcError("that secret is not an Excloud secret access key (40 characters)")
    api = _api()
    key = api.request("GET", f"/keys/{key_id}")
    if key["status"] not in ("active", "inactive"):
        raise ExcError(f"key {key_id} is {printable(key['status'])}; create a new one", EXIT_ERROR)
    _write_profile(api, profile, key_id, secret, set_default=set_default)


def _checked_profile(profile: str) -> str:
    if not PROFILE_RE.match(profile):
        raise ExcError(f"{profile!r} is not a usable profile name (letters, digits, _ . @ + -)")
    return profile


def _write_profile(
    api: Api, profile: str, key_id: str, secret: str, *, set_default: bool, err: bool = False
) -> None:
    """Point the AWS profile at the portal's endpoint with this key, keeping the rest.

    ``err`` sends the notes to stderr, leaving stdout to the new key's two lines.
    """
    portal = api.get("/config")
    endpoint, region = portal["s3_endpoint"], portal["region"]
    for value in (endpoint, region):
        if not isinstance(value, str) or not INI_VALUE_RE.match(value):
            raise ExcError(f"the portal sent an unusable S3 endpoint or region: {value!r}")

    config, credentials = files.aws_config_path(), files.aws_credentials_path()
    section = "default" if profile == "default" else f"profile {profile}"
    # Path-style addressing suits an endpoint given by address, and aws-cli v1 presigns
    # with Signature Version 2 unless told otherwise, which the endpoint refuses.
    s3 = {"addressing_style": "path", "signature_version": "s3v4"}
    files.update_ini(config, section, {"region": region, "endpoint_url": endpoint, "s3": s3})
    if set_default and profile != "default":
        files.update_ini(config, "default", {"endpoint_url": endpoint})
    files.update_ini(
        credentials, profile, {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    )
    click.echo(f"Wrote profile {profile} to {config} and {credentials}.", err=err)
    hint = "aws s3 ls" if profile == "default" else f"aws --profile {profile} s3 ls"
    click.echo(f"Try: {hint}", err=err)


def _overlap_hours(value: str) -> int:
    """Hours from '24h', '2d' or a bare number of hours."""
    match = OVERLAP_RE.match(value.strip().lower())
    if not match:
        raise click.BadParameter("give hours or days, e.g. 24h or 7d", param_hint="--overlap")
    hours = int(match.group(1)) * (24 if match.group(2) == "d" else 1)
    if not 1 <= hours <= MAX_OVERLAP_HOURS:
        raise click.BadParameter("between 1h and 30d", param_hint="--overlap")
    return hours


@keys.command(context_settings=CONTEXT)
@click.argument("key_id", metavar="ID")
@click.option("--overlap", default="24h", show_default=True, help="How long the old key works on.")
@click.option("--profile", help="Also switch this AWS profile to the new key, e.g. excloud.")
@click.option("--json", "as_json", is_flag=True, help="Print the new key as JSON.")
def rotate(key_id: str, overlap: str, profile: str | None, as_json: bool) -> None:
    """Replace key ID with a new key and print the new ID and secret (shown this once).

    The old key keeps working for the overlap (default 24h, at most 30d) and then stops.
    With --profile, that AWS profile is rewritten in place as `configure` does, so
    `aws --profile P` uses the new key at once.
    """
    key_id = _key_id(key_id)
    hours = _overlap_hours(overlap)
    if profile is not None:
        _checked_profile(profile)
    api = _api()
    answer = api.request("POST", f"/keys/{key_id}/rotate", json={"overlap_hours": hours})
    key = _new_key(api, answer)
    _show_new_key(key, as_json)
    if profile is not None:
        secret = key["secret_access_key"]
        _write_profile(api, profile, key["id"], secret, set_default=False, err=True)
    previous = answer.get("previous") or {}
    until = _when(previous.get("expires_at")) if isinstance(previous, dict) else "never"
    click.echo(f"The old key {key_id} keeps working until {printable(until)} UTC.", err=True)


def main() -> None:
    cli(prog_name="exc")


if __name__ == "__main__":
    main()
