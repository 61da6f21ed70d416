from __future__ import annotations

from django import forms

from excloud_portal.text import validate_text

from .models import ORG_ACTIONS
from .queries import AuditFilter

TEXT_MAX_LENGTH = 100


class AuditFilterForm(forms.Form):
    """The audit page's filters, read from the query string."""

    actor = forms.CharField(
        max_length=254,
        required=False,
        validators=[validate_text],
        label="Actor",
        help_text="An email address or the start of one.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. alice@", "autocomplete": "off"}),
    )
    action = forms.ChoiceField(
        choices=[("", "Any action"), *((a.value, a.value) for a in ORG_ACTIONS)],
        required=False,
        label="Action",
    )
    target = forms.CharField(
        max_length=64,
        required=False,
        validators=[validate_text],
        label="Key",
        help_text="An access key ID or a key's name.",
        widget=forms.TextInput(attrs={"placeholder": "EXC… or laptop", "autocomplete": "off"}),
    )
    date_from = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the start date as YYYY-MM-DD."},
    )
    date_to = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the end date as YYYY-MM-DD."},
    )
    q = forms.CharField(
        max_length=TEXT_MAX_LENGTH,
        required=False,
        validators=[validate_text],
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Any text", "autocomplete": "off"}
        ),
    )

    def add_prefix(self, field_name: str) -> str:
        # The parameters are "from" and "to", which Python cannot name fields.
        return {"date_from": "from", "date_to": "to"}.get(field_name, field_name)

    def clean(self) -> dict:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned

    def to_filter(self) -> AuditFilter:
        data = self.cleaned_data
        return AuditFilter(
            actor=data["actor"],
            action=data["action"],
            target=data["target"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            text=data["q"],
        )
