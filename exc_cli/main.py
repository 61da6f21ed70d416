"""exc: Excloud access keys from a terminal.

exc login
exc login --token exc_…
exc buckets keys create laptop
exc buckets keys create ingest --bucket logs --prefix app/ --read-only --allow-ip 10.0.0.0/8
exc buckets keys list
exc buckets keys scope EXC… --read-only
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


# -- scopes ----------------------------------------------------------------------------

PERMISSION_FLAGS = {"--read-only": "read-only", "--read-write": "read-write", "--admin": "admin"}
# The options of the scoped commands that take a value, to tell values from options when
# pairing each --prefix with the --bucket before it.
VALUE_OPTIONS = ("--bucket", "--prefix", "--allow-ip", "--name")


class ScopedCommand(click.Command):
    """A command whose --bucket and --prefix options pair up in the order given, which
    click's parsed values do not keep: the raw arguments are kept for that."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["exc.raw_args"] = list(args)
        return super().parse_args(ctx, args)


def scope_options(command):
    for option in reversed(
        [
            click.option(
                "--bucket",
                "buckets",
                multiple=True,
                metavar="BUCKET",
                help="Only this bucket (repeat for more); by default all buckets.",
            ),
            click.option(
                "--prefix",
                "prefixes",
                multiple=True,
                metavar="PREFIX",
                help="Only objects whose names start with PREFIX, in the --bucket before it.",
            ),
            click.option(
                "--read-only", "permission", flag_value="read-only", help="Get, head and list."
            ),
            click.option(
                "--read-write",
                "permission",
                flag_value="read-write",
                help="Also put, delete, multipart uploads and copies.",
            ),
            click.option(
                "--admin",
                "permission",
                flag_value="admin",
                help="Also create and delete buckets (the default).",
            ),
            click.option(
                "--allow-ip",
                "networks",
                multiple=True,
                metavar="CIDR",
                help="Only requests from this address or network (repeat for more).",
            ),
        ]
    ):
        command = option(command)
    return command


def _grants_in_order(buckets: tuple[str, ...], prefixes: tuple[str, ...]) -> list[dict[str, str]]:
    """Each --bucket with the --prefix that follows it, from the raw arguments."""
    args = click.get_current_context().meta.get("exc.raw_args", [])
    grants: list[dict[str, str]] = []
    prefixed: set[int] = set()
    permissions: set[str] = set()
    i = 0
    while i < len(args) and args[i] != "--":
        option, has_value, value = args[i].partition("=")
        i += 1
        if option in PERMISSION_FLAGS and not has_value:
            permissions.add(option)
        if option not in VALUE_OPTIONS:
            continue
        if not has_value:
            value = args[i] if i < len(args) else ""
            i += 1
        if option == "--bucket":
            grants.append({"name": value, "prefix": ""})
        elif option == "--prefix":
            if not grants:
                raise click.UsageError(
                    "--prefix applies to the --bucket before it: give --bucket BUCKET first"
                )
            if len(grants) - 1 in prefixed:
                raise click.UsageError("give at most one --prefix after each --bucket")
            prefixed.add(len(grants) - 1)
            grants[-1]["prefix"] = value
    if len(permissions) > 1:
        raise click.UsageError("give one of --read-only, --read-write and --admin")
    # The pairing must have read the same values click did.
    paired = [grants[n]["prefix"] for n in sorted(prefixed)]
    if [g["name"] for g in grants] != list(buckets) or paired != list(prefixes):
        raise click.UsageError("could not pair each --prefix with the --bucket before it")
    return grants


def describe_scope(scope: Any) -> str:
    """The scope in words, as the portal writes it: `read-only on logs/app/*, from ...`."""
    if not isinstance(scope, dict):
        return "unknown"
    buckets = scope.get("buckets")
    if buckets is None:
        where = "all of the organisation's buckets"
    else:
        where = ", ".join(
            f"{b.get('name')}/{b.get('prefix')}*" if b.get("prefix") else str(b.get("name"))
            for b in buckets
            if isinstance(b, dict)
        )
    words = f"{scope.get('permission')} on {where}"
    if scope.get("networks"):
        words += ", from " + ", ".join(str(n) for n in scope["networks"])
    return printable(words)


def scope_badge(scope: Any) -> str:
    """The scope in a table cell: `read-only · 2 buckets · IP-limited`."""
    if not isinstance(scope, dict):
        return "?"
    parts = [str(scope.get("permission"))]
    buckets = scope.get("buckets")
    if buckets is None:
        parts.append("all buckets")
    elif len(buckets) == 1 and isinstance(buckets[0], dict):
        grant = buckets[0]
        parts.append(
            f"{grant.get('name')}/{grant.get('prefix')}*"
            if grant.get("prefix")
            else str(grant.get("name"))
        )
    else:
        parts.append(f"{len(buckets)} buckets")
    if scope.get("networks"):
        parts.append("IP-limited")
    return printable(" · ".join(parts))


def _is_default_scope(scope: Any) -> bool:
    return scope in (None, {"permission": "admin", "buckets": None, "networks": []})


@keys.command(cls=ScopedCommand, context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--name", "name_option", metavar="NAME", help="The key's name (or give it as NAME).")
@scope_options
@click.option("--json", "as_json", is_flag=True, help="Print the new key as JSON.")
def create(
    name: str | None,
    name_option: str | None,
    buckets: tuple[str, ...],
    prefixes: tuple[str, ...],
    permission: str | None,
    networks: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a key called NAME and print its ID and secret (shown this once).

    Give the name as an argument or with --name, not both. The pair is also kept in
    ~/.config/exc/keys.json (mode 0600) for `configure`.

    By default the key is admin on all of the organisation's buckets, from any address.
    Narrow it with --read-only or --read-write, --bucket B (repeatable; a --prefix P after
    a --bucket limits that bucket to object names starting with P) and --allow-ip CIDR
    (repeatable). A key's scope can later be narrowed, never widened.

    \b
    exc buckets keys create ingest --bucket logs --prefix app/ --read-only --allow-ip 10.0.0.0/8
    """
    if (name is None) == (name_option is None):
        raise click.UsageError("give the key's name once: `create NAME` or `create --name NAME`")
    name = name if name is not None else name_option
    grants = _grants_in_order(buckets, prefixes)
    body: dict[str, Any] = {"name": name}
    if grants or permission or networks:
        body["scope"] = {
            "permission": permission or "admin",
            "buckets": grants or None,
            "networks": list(networks),
        }
    api = _api()
    key = _new_key(api, api.request("POST", "/keys", json=body))
    _show_new_key(key, as_json)
    if not as_json and not _is_default_scope(key.get("scope")):
        click.echo(f"Scope: {describe_scope(key.get('scope'))}", err=True)


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
                "scope": key.get("scope"),
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
        fields = ("id", "name", "status", "created_at", "created_by", "last_used_at", "scope")
        _print_json([{f: k.get(f) for f in fields} for k in items])
        return
    rows = [("ID", "NAME", "STATUS", "SCOPE", "CREATED", "LAST USED")] + [
        tuple(
            printable(v)
            for v in (
                k["id"],
                k["name"],
                k["status"],
                scope_badge(k.get("scope")),
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


@keys.command(cls=ScopedCommand, context_settings=CONTEXT)
@click.argument("key_id", metavar="ID")
@scope_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the key's scope as JSON.")
def scope(
    key_id: str,
    buckets: tuple[str, ...],
    prefixes: tuple[str, ...],
    permission: str | None,
    networks: tuple[str, ...],
    yes: bool,
    as_json: bool,
) -> None:
    """Show key ID's scope, or narrow it: it can never be widened (make a new key instead).

    Each option given replaces that part of the scope and keeps the others: --read-only
    or --read-write the permission, the --bucket (and --prefix) options the buckets,
    the --allow-ip options the source addresses. The change applies from the key's next
    request; exc shows the scope before and after and asks first (--yes to skip).

    \b
    exc buckets keys scope EXC… --read-only
    exc buckets keys scope EXC… --bucket logs --prefix app/2026/ --allow-ip 10.1.0.0/16
    """
    key_id = _key_id(key_id)
    grants = _grants_in_order(buckets, prefixes)
    api = _api()
    key = api.request("GET", f"/keys/{key_id}")
    current = key["scope"]
    if not isinstance(current, dict):
        raise ExcError("the portal's answer held no scope for the key")
    wanted = {
        "permission": permission or current.get("permission"),
        "buckets": grants if grants else current.get("buckets"),
        "networks": list(networks) if networks else current.get("networks", []),
    }
    if not (grants or permission or networks):
        if as_json:
            _print_json(current)
        else:
            click.echo(f"Key {key_id} ({printable(key['name'])}) may do {describe_scope(current)}.")
        return
    if wanted == current:
        click.echo(f"Key {key_id} has that scope already; nothing changed.", err=True)
        return
    click.echo(f"Before: {describe_scope(current)}", err=True)
    click.echo(f"After:  {describe_scope(wanted)}", err=True)
    if not yes:
        if not _interactive():
            raise ExcError(f"not narrowing {key_id}'s scope without confirmation: pass --yes")
        click.confirm(
            f"Narrow key {key_id} ({printable(key['name'])})? Requests outside the new scope "
            "will fail",
            abort=True,
        )
    changed = api.request("PUT", f"/keys/{key_id}/scope", json=wanted)
    if as_json:
        _print_json(changed["scope"])
    else:
        click.echo(f"Key {key_id} may now do {describe_scope(changed['scope'])}.")


def main() -> None:
    cli(prog_name="exc")


if __name__ == "__main__":
    main()
