from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, SetPasswordForm
from django.core.exceptions import ValidationError

from excloud_portal.text import validate_text

from .models import Role, User


class SignUpForm(forms.Form):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        validators=[validate_text],
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
        strip=False,
    )
    org_name = forms.CharField(
        label="Organisation name",
        max_length=100,
        required=False,
        help_text="Leave empty to name it after your email address.",
        validators=[validate_text],
    )

    def __init__(self, *args, invited_email: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.invited_email = invited_email
        if invited_email:
            self.fields["email"].initial = invited_email
            del self.fields["org_name"]

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email exists. Sign in instead.")
        if self.invited_email and email != self.invited_email.lower():
            raise forms.ValidationError(f"This invitation is for {self.invited_email}.")
        return email

    def clean(self) -> dict:
        data = super().clean()
        password = data.get("password")
        if password:
            try:
                password_validation.validate_password(password, User(email=data.get("email", "")))
            except forms.ValidationError as e:
                self.add_error("password", e)
        if "org_name" in self.fields and not data.get("org_name") and data.get("email"):
            data["org_name"] = data["email"].split("@")[0]
        return data


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )


class InviteForm(forms.Form):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "off"}), validators=[validate_text]
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, roles: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)

    def __init__(self, *args, roles: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles


TOKEN_LIFETIMES = [
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("", "Never"),
]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="What the token is for, e.g. laptop-cli or ci-deploy.",
        error_messages={"required": "Give the token a name."},
        validators=[validate_text],
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. laptop-cli"}),
    )
    expires_in = forms.ChoiceField(
        choices=TOKEN_LIFETIMES, required=False, initial="90", label="Expires after"
    )


def _revoke_api_tokens_field() -> forms.BooleanField:
    return forms.BooleanField(
        required=False,
        initial=True,
        label="Also revoke my API tokens, in every organisation",
        help_text="Tools that use them stop working until you give them a new token. "
        "Do this if someone else may have known your password.",
    )


class NewPasswordForm(SetPasswordForm):
    """A new password from an emailed link, optionally ending the user's API tokens too."""

    revoke_api_tokens = _revoke_api_tokens_field()


class ChangePasswordForm(PasswordChangeForm):
    """A signed-in user's new password, optionally ending their API tokens too.

    The current password is checked through ``authenticate()``, like a sign-in, so the
    sign-in lockout counts wrong guesses here too: a borrowed session cannot guess its
    way to the password.
    """

    revoke_api_tokens = _revoke_api_tokens_field()

    def __init__(self, user, *args, request=None, **kwargs) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        old_password = self.cleaned_data["old_password"]
        if authenticate(self.request, username=self.user.email, password=old_password) is None:
            raise ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return old_password


class TwoFactorRequirementForm(forms.Form):
    require_two_factor = forms.BooleanField(
        required=False, label="Require two-factor sign-in of every member"
    )
