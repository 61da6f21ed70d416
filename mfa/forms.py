from __future__ import annotations

from django import forms

from .models import TOTP_CODE_RE


class CodeForm(forms.Form):
    """A code from the authenticator app, or a recovery code."""

    code = forms.CharField(
        label="Code",
        max_length=40,
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        error_messages={"required": "Enter a code."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"}
        ),
    )


class TotpConfirmForm(forms.Form):
    code = forms.CharField(
        label="Code from the app",
        max_length=10,
        error_messages={"required": "Enter the 6 digits the app shows."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )
    name = forms.CharField(
        label="Name",
        max_length=64,
        required=False,
        help_text="To tell your devices apart, e.g. “phone”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. phone"}),
    )

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].replace(" ", "")
        if not TOTP_CODE_RE.match(code):
            raise forms.ValidationError("Enter the 6 digits the app shows.")
        return code


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )


class PasskeyForm(forms.Form):
    name = forms.CharField(
        label="Passkey name",
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. laptop"}),
    )
    credential = forms.CharField(widget=forms.HiddenInput, max_length=20_000)


class PasskeyAnswerForm(forms.Form):
    credential = forms.CharField(widget=forms.HiddenInput, max_length=20_000)
