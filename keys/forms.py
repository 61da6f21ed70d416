from __future__ import annotations

import secrets

from django import forms

from .models import NAME_MAX_LENGTH
from .services import NAME_RULES, AccessKeyError, clean_key_name


class CreateKeyForm(forms.Form):
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
    # A random token per rendered form; the same form submitted twice creates one key.
    # Optional, so a client that posts without it still gets a key (just no de-duplication).
    creation_token = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("creation_token", secrets.token_urlsafe(24))

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
        widget=forms.TextInput(attrs={"placeholder": "e.g. laptop lost"}),
    )
