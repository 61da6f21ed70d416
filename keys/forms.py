from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta

from django import forms
from django.utils import timezone

from excloud_portal.text import validate_text

from . import scope_text
from .models import NAME_MAX_LENGTH
from .scope import (
    ADMIN,
    MAX_BUCKETS,
    MAX_NETWORKS,
    PERMISSION_WORDS,
    PERMISSIONS,
    BucketGrant,
    Scope,
    ScopeError,
    parse_network,
)
from .services import NAME_RULES, AccessKeyError, clean_key_name

EXPIRY_PRESETS = [
    ("", "Never (the policy's limits still apply)"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
]


class ScopeForm(forms.Form):
    """A key's scope as three fields: the permission, the buckets (``bucket`` or
    ``bucket/prefix`` per line, none for all) and the source networks (a CIDR per line,
    none for any). ``cleaned_data["scope"]`` is the Scope."""

    permission = forms.ChoiceField(
        label="Permission",
        choices=[(p, PERMISSION_WORDS[p].capitalize()) for p in PERMISSIONS],
        initial=ADMIN,
        widget=forms.RadioSelect,
        # Optional, so a client that posts only a name gets the default scope, as before.
        required=False,
        error_messages={"invalid_choice": "Choose a permission."},
    )
    buckets = forms.CharField(
        label="Buckets",
        required=False,
        max_length=MAX_BUCKETS * 1100,
        help_text="Empty for all of the organisation's buckets. Otherwise one per line: "
        "<code>bucket</code>, or <code>bucket/prefix</code> for only the objects whose names "
        "start with the prefix.",
        widget=forms.Textarea(
            attrs={"rows": 3, "spellcheck": "false", "placeholder": "logs/app/\nbackups"}
        ),
    )
    networks = forms.CharField(
        label="Allowed source addresses",
        required=False,
        max_length=MAX_NETWORKS * 50,
        help_text="Empty for any address. Otherwise one IPv4 or IPv6 address or network per "
        "line, such as <code>203.0.113.0/24</code>.",
        widget=forms.Textarea(
            attrs={"rows": 2, "spellcheck": "false", "placeholder": "203.0.113.0/24"}
        ),
    )

    def clean_permission(self) -> str:
        return self.cleaned_data["permission"] or ADMIN

    def clean_buckets(self) -> list[tuple[str, str]] | None:
        grants = scope_text.parse_bucket_lines(self.cleaned_data["buckets"])
        try:
            for name, prefix in grants or ():
                BucketGrant(name, prefix)
            Scope(buckets=tuple(BucketGrant(*grant) for grant in grants) if grants else None)
        except ScopeError as e:
            raise forms.ValidationError(str(e)) from None
        return grants

    def clean_networks(self) -> list[str]:
        networks = scope_text.parse_network_lines(self.cleaned_data["networks"])
        try:
            Scope(networks=tuple(parse_network(net) for net in networks))
        except ScopeError as e:
            raise forms.ValidationError(str(e)) from None
        return networks

    def clean(self) -> dict:
        data = super().clean()
        if not any(f in self.errors for f in ("permission", "buckets", "networks")):
            try:
                data["scope"] = Scope.build(
                    permission=data["permission"],
                    buckets=data["buckets"],
                    networks=data["networks"],
                )
            except ScopeError as e:
                self.add_error(None, str(e))
        return data

    @staticmethod
    def initial_for(scope: Scope) -> dict[str, str]:
        return {
            "permission": scope.permission,
            "buckets": scope_text.bucket_lines(scope),
            "networks": scope_text.network_lines(scope),
        }

    @property
    def scope_open(self) -> bool:
        """Whether the page shows the scope fields unfolded: when they hold an error or
        anything but the default, so nothing typed is out of sight."""
        if not self.is_bound:
            return False
        if any(f in self.errors for f in ("permission", "buckets", "networks")):
            return True
        data = self.data
        return (
            data.get("permission", ADMIN) != ADMIN
            or bool(data.get("buckets", "").strip())
            or bool(data.get("networks", "").strip())
            or bool(self.non_field_errors())
        )


class CreateKeyForm(ScopeForm):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH + 200,  # Over-long names get our own message, not the browser's.
        help_text=NAME_RULES,
        error_messages={"required": "Give the key a name."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "placeholder": "e.g. laptop or ci-deploy",
                "maxlength": NAME_MAX_LENGTH,
                "spellcheck": "false",
            }
        ),
    )
    expires_in = forms.TypedChoiceField(
        label="Expires",
        choices=EXPIRY_PRESETS,
        coerce=int,
        empty_value=None,
        required=False,
    )
    expires_on = forms.DateField(
        label="Or on a date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the end of that day, UTC.",
    )
    # A random token per rendered form; the same form submitted twice creates one key.
    # Optional, so a client that posts without it still gets a key (just no de-duplication).
    creation_token = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args, max_age_days: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("creation_token", secrets.token_urlsafe(24))
        if max_age_days:
            # Offer only what the org's policy allows; without a choice the policy's
            # maximum age applies anyway.
            self.fields["expires_in"].choices = [
                ("", f"At the policy's maximum ({max_age_days} days)"),
                *[(v, label) for v, label in EXPIRY_PRESETS if v and int(v) <= max_age_days],
            ]

    field_order = ["name", "expires_in", "expires_on", "permission", "buckets", "networks"]

    def clean(self) -> dict:
        data = super().clean()
        on, days = data.get("expires_on"), data.get("expires_in")
        if on:
            data["expires_at"] = datetime.combine(on, time(23, 59, 59), tzinfo=UTC)
        elif days:
            data["expires_at"] = timezone.now() + timedelta(days=days)
        else:
            data["expires_at"] = None
        return data

    def clean_name(self) -> str:
        try:
            return clean_key_name(self.cleaned_data["name"])
        except AccessKeyError as e:
            raise forms.ValidationError(str(e)) from None


class RevokeKeyForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        required=False,
        label="Reason (optional)",
        validators=[validate_text],
        widget=forms.TextInput(attrs={"placeholder": "e.g. laptop lost"}),
    )


class KeyPolicyForm(forms.Form):
    inactivity_days = forms.IntegerField(
        label="Expire keys unused for (days)",
        min_value=0,
        max_value=3650,
        help_text="A key that was never used counts from its creation. 0 turns this off.",
    )
    max_age_days = forms.IntegerField(
        label="Maximum key age (days)",
        min_value=0,
        max_value=3650,
        help_text="Keys older than this are expired, used or not. 0 turns this off.",
    )
    warning_days = forms.IntegerField(
        label="Warn this many days before",
        min_value=1,
        max_value=90,
        help_text="The key's creator gets an email this long before a key expires.",
    )
    warn_admins = forms.BooleanField(
        label="Also warn the organisation's owners and admins", required=False
    )


OVERLAP_CHOICES = [
    ("1", "1 hour"),
    ("6", "6 hours"),
    ("24", "24 hours"),
    ("72", "3 days"),
    ("168", "7 days"),
    ("720", "30 days"),
]


class RotateKeyForm(forms.Form):
    overlap_hours = forms.TypedChoiceField(
        label="Keep the old key working for",
        choices=OVERLAP_CHOICES,
        coerce=int,
        initial="24",
        help_text="Deploy the new secret within this time; then the old key stops by itself.",
    )
    name = forms.CharField(
        label="New key's name",
        required=False,
        max_length=NAME_MAX_LENGTH + 200,
        help_text="Leave empty for the old name with a dated suffix. " + NAME_RULES,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_name(self) -> str | None:
        name = self.cleaned_data["name"].strip()
        if not name:
            return None
        try:
            return clean_key_name(name)
        except AccessKeyError as e:
            raise forms.ValidationError(str(e)) from None
