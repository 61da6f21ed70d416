"""Credential snippets: the files people paste or download to point a tool at Excloud.

Every snippet is rendered here, from the plain-text templates in templates/keys/snippets/,
with the endpoint and region from settings (the same values the API's /config gives the
CLI). At creation the secret is filled in, and the page that shows it is the only place
the text exists: the browser builds the downloads from it. Later pages render the same
snippets with ``SECRET_PLACEHOLDER`` instead. Each snippet but the CSV carries the key's
scope in a comment (keys/scope_text.comment_text), so a file found later says what the key
may do.

The AWS profile name is editable in the browser, so the snippets are rendered with
``PROFILE_TOKEN`` where it goes; ``Snippet.text()`` puts a name in its place and
``Snippet.html()`` a ``<span data-profile>`` that the page's script rewrites.
"""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass, field

from django.conf import settings
from django.template import Engine, Library
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .scope import DEFAULT_SCOPE, Scope
from .scope_text import comment_text

DEFAULT_PROFILE = "excloud"
SECRET_PLACEHOLDER = "<your secret access key>"
# A private-use character cannot come from settings or a key, so it marks only the profile.
PROFILE_TOKEN = "\ue000"
# The AWS files have no extension, and browsers add ".txt" to a text/plain download.
NO_EXTENSION_TYPE = "application/octet-stream"
TEMPLATE_DIR = settings.BASE_DIR / "templates" / "keys" / "snippets"

register = Library()


@register.filter
def shell(value: str) -> str:
    """Quote for a POSIX shell (and .env files), only where the value needs it."""
    return shlex.quote(str(value))


@register.filter
def quoted(value: str) -> str:
    """A double-quoted string that Python and YAML both read back as the value."""
    return json.dumps(str(value))


@functools.cache
def _engine() -> Engine:
    # Snippets are plain text: escaping them for HTML happens once, in Snippet.html().
    return Engine(dirs=[str(TEMPLATE_DIR)], autoescape=False, builtins=[__name__])


@dataclass(frozen=True)
class Kind:
    """One kind of snippet: its template, download file name and type, and where it goes."""

    name: str
    title: str
    filename: str
    mime: str
    where: str


KINDS = {
    kind.name: kind
    for kind in (
        Kind(
            "aws_credentials",
            "~/.aws/credentials",
            "credentials",
            NO_EXTENSION_TYPE,
            "Add this section to ~/.aws/credentials (aws-cli, boto3 and the AWS SDKs read it).",
        ),
        Kind(
            "aws_config",
            "~/.aws/config",
            "config",
            NO_EXTENSION_TYPE,
            f"Add this section to ~/.aws/config, then try: aws --profile {PROFILE_TOKEN} s3 ls",
        ),
        Kind(
            "env",
            ".env file",
            "excloud.env",
            "text/plain",
            "For docker --env-file, Compose or your app's .env; in a shell: "
            "set -a; . ./excloud.env; set +a",
        ),
        Kind(
            "shell",
            "Shell",
            "excloud.sh",
            "text/x-shellscript",
            "Paste into a terminal, or source it: . ./excloud.sh",
        ),
        Kind(
            "boto3",
            "boto3",
            "excloud_list_buckets.py",
            "text/x-python",
            "Run it with python3 excloud_list_buckets.py (needs pip install boto3).",
        ),
        Kind(
            "rclone",
            "rclone.conf",
            "rclone.conf",
            "text/plain",
            "Add this remote to your rclone.conf (rclone config file shows where it is), "
            "then try: rclone lsd excloud:",
        ),
        Kind(
            "kubernetes",
            "Kubernetes Secret",
            "excloud-secret.yaml",
            "application/yaml",
            "kubectl apply -f excloud-secret.yaml, then give a pod the variables with "
            "envFrom: secretRef.",
        ),
        Kind(
            "csv",
            "CSV",
            "{key_id}_accessKeys.csv",
            "text/csv",
            "The AWS console's access key file: tools that import one (Cyberduck, "
            "backup agents) take it as is.",
        ),
    )
}

# The tabs of the snippet panel, each with the kinds it shows, in order.
TABS = (
    ("aws", "AWS CLI / SDKs", ("aws_credentials", "aws_config")),
    ("env", "Environment", ("env", "shell")),
    ("boto3", "boto3", ("boto3",)),
    ("rclone", "rclone", ("rclone",)),
    ("kubernetes", "Kubernetes", ("kubernetes",)),
    ("csv", "CSV", ("csv",)),
)


def _with_profile(text: str) -> SafeString:
    """HTML for text holding PROFILE_TOKEN: escaped, with the token as an editable span."""
    span = format_html('<span data-profile="">{}</span>', DEFAULT_PROFILE)
    return mark_safe(span.join(escape(part) for part in text.split(PROFILE_TOKEN)))


@dataclass(frozen=True)
class Snippet:
    kind: Kind
    key_id: str
    # With PROFILE_TOKEN where the profile name goes. It may hold a secret, so no repr:
    # Django's template debug logging prints the context of a failed variable lookup.
    template_text: str = field(repr=False)

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def filename(self) -> str:
        return self.kind.filename.format(key_id=self.key_id)

    def text(self, profile: str = DEFAULT_PROFILE) -> str:
        return self.template_text.replace(PROFILE_TOKEN, profile)

    def html(self) -> SafeString:
        return _with_profile(self.template_text)

    def where_html(self) -> SafeString:
        return _with_profile(self.kind.where)


@dataclass(frozen=True)
class Tab:
    name: str
    title: str
    snippets: tuple[Snippet, ...]


def _context(key_id: str, secret: str | None, scope: Scope) -> dict[str, str]:
    return {
        "key_id": key_id,
        "secret": secret if secret is not None else SECRET_PLACEHOLDER,
        "profile": PROFILE_TOKEN,
        "endpoint": settings.EXCLOUD_S3_ENDPOINT,
        "region": settings.EXCLOUD_S3_REGION,
        # Secret names are DNS labels; base32 key IDs lowercased are.
        "k8s_name": f"excloud-{key_id.lower()}",
        # One line, whatever the prefixes hold: a comment in every format that has them.
        "scope_comment": comment_text(scope),
    }


def _render(name: str, key_id: str, secret: str | None, scope: Scope) -> str:
    return _engine().render_to_string(f"{name}.txt", _context(key_id, secret, scope))


def render(
    name: str, key_id: str, secret: str | None = None, scope: Scope = DEFAULT_SCOPE
) -> Snippet:
    """One snippet for this key; without the secret, SECRET_PLACEHOLDER stands in for it."""
    return Snippet(KINDS[name], key_id, _render(name, key_id, secret, scope))


def tabs(key_id: str, secret: str | None = None, scope: Scope = DEFAULT_SCOPE) -> list[Tab]:
    """Every downloadable snippet for this key, grouped as the panel's tabs."""
    return [
        Tab(tab, title, tuple(render(name, key_id, secret, scope) for name in names))
        for tab, title, names in TABS
    ]


def configure_command_html(key_id: str) -> SafeString:
    """The exc command line that writes this key into an AWS profile, for the page."""
    return _with_profile(_render("exc_configure", key_id, None, DEFAULT_SCOPE).strip())
