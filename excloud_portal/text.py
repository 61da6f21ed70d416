"""Text that people type is text: no control characters and no hidden direction changes.

A control character in a name ends up in an email header or a terminal; a bidirectional
override makes the audit page show "fdp.exe" for "exe.pdf". Forms, service functions and API
schemas all check free text here, so the dashboard, the API and the management commands
accept exactly the same text.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from django.core.exceptions import ValidationError
from pydantic import AfterValidator

# Format characters that change the direction text is shown in: embeddings and overrides,
# isolates, and the marks (left-to-right, right-to-left, Arabic letter).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class UnsafeText(ValueError):
    """Text holding a control character or a direction control, with a message saying so."""


def is_forbidden(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


def check_text(value: str, what: str = "This text") -> str:
    """The value unchanged, or UnsafeText naming the characters it may not hold."""
    found = sorted({c for c in value if is_forbidden(c)})
    if found:
        codes = ", ".join(f"U+{ord(c):04X}" for c in found)
        raise UnsafeText(
            f"{what} cannot contain control characters or text-direction controls (found {codes})."
        )
    return value


def validate_text(value: str) -> None:
    """The rule as a Django validator, for form fields."""
    try:
        check_text(value, "This field")
    except UnsafeText as e:
        raise ValidationError(str(e), code="unsafe_text") from None


def printable(value: str) -> str:
    """The value without the characters the rule refuses, for text stored before the rule
    existed that goes somewhere they would do harm, such as an email subject."""
    return "".join(c for c in value if not is_forbidden(c))


def _check_field(value: str) -> str:
    return check_text(value, "This field")


# The rule as a type for API schemas: a violation answers 422 like any invalid field.
PlainText = Annotated[str, AfterValidator(_check_field)]
