"""exc: Excloud access keys from a terminal.

exc login --token exc_…
exc buckets keys create laptop
exc buckets keys list
exc buckets keys configure EXC… --profile excloud
exc buckets keys delete EXC…
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import click

from . import files
from .client import DEFAULT_API_URL, EXIT_AUTH, EXIT_ERROR, Api, ExcError

ACCESS_KEY_ID_RE = re.compile(r"^EXC[A-Z2-7]{17}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9+/]{40}$")
PROFILE_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
# What may go into an INI value from the server: no spaces, newlines or brackets.
INI_VALUE_RE = re.compile(r"^[A-Za-z0-9:/._~%?&=+-]{1,500}$")
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _login() -> tuple[str, str]:
    stored = files.read_json(files.login_path())
    url = os.environ.get("EXC_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    token = os.environ.get("EXC_TOKEN") or stored.get("token")
    if not token:
        raise ExcError(
            "not logged in: run `exc login --token exc_…` (create a token on the portal's "
            "API tokens page) or set EXC_TOKEN",
            EXIT_AUTH,
        )
    return url, token


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


class Command(click.Group):
    """Turns every ExcError and OS error into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExcError as e:
            click.echo(f"exc: error: {e}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:
            click.echo(f"exc: error: {e}", err=True)
            sys.exit(EXIT_ERROR)


@click.group(cls=Command, context_settings=CONTEXT)
def cli() -> None:
    """Manage Excloud access keys from a terminal.

    Log in once with an API token from the portal's API tokens page; EXC_TOKEN and
    EXC_API_URL override the stored login. Exit codes: 1 error, 2 usage, 3 token refused
    or not allowed, 4 not found, 5 the API could not be reached.
    """


@cli.command(context_settings=CONTEXT)
@click.option("--token", prompt="API token", hide_input=True, help="An exc_… API token.")
@click.option("--api-url", default=None, help=f"The portal's URL (default {DEFAULT_API_URL}).")
def login(token: str, api_url: str | None) -> None:
    """Check an API token and store it in ~/.config/exc/config.json (mode 0600)."""
    token = token.strip()
    url = (api_url or os.environ.get("EXC_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ExcError(f"{url!r} is not an http:// or https:// URL")
    me = Api(url, token).get("/config")
    files.write_json(files.login_path(), {"api_url": url, "token": token})
    click.echo(f"Logged in to {me['org']['name']} at {url} as {me['user']} ({me['role']}).")


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
    key = api.request("POST", "/keys", json={"name": name})
    secret = key["secret_access_key"]
    store = _store()
    store[key["id"]] = {"secret_access_key": secret, "name": key["name"], "api_url": api.url}
    _save_store(store)
    if as_json:
        _print_json(
            {
                "access_key_id": key["id"],
                "secret_access_key": secret,
                "name": key["name"],
                "created_at": key["created_at"],
            }
        )
    else:
        click.echo(f"ACCESS_KEY_ID: {key['id']}")
        click.echo(f"SECRET_ACCESS_KEY: {secret}")


def _all_keys(api: Api, status: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get("/keys", status=status, limit=500, after=cursor)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "never"


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
        (k["id"], k["name"], k["status"], _when(k["created_at"]), _when(k["last_used_at"]))
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
            f"Revoke key {key_id} ({key['name']})? Requests signed with it will fail",
            abort=True,
        )
    key = api.request("DELETE", f"/keys/{key_id}")
    store = _store()
    if store.pop(key_id, None) is not None:
        _save_store(store)
    click.echo(f"Revoked {key_id} ({key['name']}). Requests signed with it now fail.")


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
    if not PROFILE_RE.match(profile):
        raise ExcError(f"{profile!r} is not a usable profile name (letters, digits, _ . @ + -)")
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
        raise ExcError(f"key {key_id} is {key['status']}; create a new one", EXIT_ERROR)
    portal = api.get("/config")
    endpoint, region = portal["s3_endpoint"], portal["region"]
    for value in (endpoint, region):
        if not INI_VALUE_RE.match(value):
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
    click.echo(f"Wrote profile {profile} to {config} and {credentials}.")
    hint = "aws s3 ls" if profile == "default" else f"aws --profile {profile} s3 ls"
    click.echo(f"Try: {hint}")


def main() -> None:
    cli(prog_name="exc")


if __name__ == "__main__":
    main()
