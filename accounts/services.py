"""Workflows for users, organisations, memberships and invitations.

Each function that changes state writes its audit event in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django_otp import user_has_device

from audit.models import AuditAction, TargetType
from audit.trail import Actor, record
from excloud_portal.text import UnsafeText, check_text, printable

from . import tokens
from .models import (
    INVITATION_LIFETIME,
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Role,
    User,
    hash_token,
)

RESERVED_SLUGS = {"new", "admin", "api", "static", "accounts", "internal"}


class MembershipError(Exception):
    """A membership change that cannot be carried out, with the reason."""


def record_account_event(
    request, user: User, action: AuditAction, details: dict | None = None
) -> None:
    """Record something that happened to a user's own account: a sign-in, a new password.

    Opens its own transaction; called inside a caller's, it joins that one.
    """
    with transaction.atomic():
        record(
            Actor.from_request(request, user=user),
            action,
            target_type=TargetType.USER,
            target_id=str(user.pk),
            details={"email": user.email, **(details or {})},
        )


def record_lockout(request, email: str, locked: tuple[str, ...]) -> None:
    """Record that failed sign-ins locked an account ("account"), the client's address
    ("ip") or both, naming the address tried (never the password).

    Opens its own transaction, as the failed sign-in that caused it is no change of ours.
    """
    with transaction.atomic():
        record(
            Actor.unauthenticated(request, email or "unknown"),
            AuditAction.USER_LOCKED_OUT,
            target_type=TargetType.USER,
            target_id=email[:64],
            details={"email": email, "locked": list(locked)},
        )


def unique_org_slug(name: str) -> str:
    base = slugify(name)[:40] or "org"
    if base in RESERVED_SLUGS:
        base = f"{base}-org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_org(owner: User, name: str, actor: Actor, slug: str | None = None) -> Organization:
    """A new organisation owned by ``owner``; UnsafeText if the name holds control characters."""
    check_text(name, "Organisation names")
    with transaction.atomic():
        org = Organization.objects.create(slug=slug or unique_org_slug(name), name=name)
        Membership.objects.create(org=org, user=owner, role=Role.OWNER)
        record(
            actor,
            AuditAction.ORG_CREATED,
            org=org,
            target_type=TargetType.ORG,
            target_id=org.slug,
            details={"name": name, "owner": owner.email},
        )
    return org


def _create_user(email: str, password: str, request, **details) -> tuple[User, Actor]:
    """A new user and the actor that acts as them, with the sign-up recorded; the caller's
    transaction then gives the user an organisation."""
    check_text(email, "Email addresses")
    user = User.objects.create_user(email=email, password=password)
    actor = Actor.from_request(request, user=user)
    record(
        actor,
        AuditAction.USER_SIGNED_UP,
        target_type=TargetType.USER,
        target_id=str(user.pk),
        details={"email": user.email, **details},
    )
    return user, actor


def sign_up(email: str, password: str, org_name: str, request) -> tuple[User, Organization]:
    """Create a user and an organisation the user owns."""
    check_text(org_name, "Organisation names")
    with transaction.atomic():
        user, actor = _create_user(email, password, request)
        org = create_org(user, org_name, actor)
    return user, org


def sign_up_by_invitation(
    email: str, password: str, token: str, request
) -> tuple[User, Organization]:
    """Create a user who joins the inviting organisation instead of getting one of their own."""
    with transaction.atomic():
        user, actor = _create_user(email, password, request, invited=True)
        membership = accept_invitation(token, user, actor)
    return user, membership.org


def invite(by: Membership, actor: Actor, email: str, role: str, request=None) -> Invitation:
    if not by.can_manage_members:
        raise PermissionDenied("Only owners and admins can invite people.")
    if role not in dict(by.assignable_roles()):
        raise PermissionDenied("You cannot invite someone with that role.")
    email = email.strip().lower()
    try:
        check_text(email, "Email addresses")
    except UnsafeText as e:
        raise MembershipError(str(e)) from None
    org = by.org
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise MembershipError(f"{email} is already a member of {org.name}.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # A new invitation replaces any pending one for the same address.
        org.invitations.pending().filter(email__iexact=email).update(revoked_at=timezone.now())
        invitation = Invitation.objects.create(
            org=org,
            email=email,
            role=role,
            token_hash=hash_token(token),
            invited_by_id=by.user_id,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        record(
            actor,
            AuditAction.MEMBER_INVITED,
            org=org,
            target_type=TargetType.INVITATION,
            target_id=str(invitation.pk),
            details={"email": email, "role": role},
        )
        link = settings.SITE_URL + reverse("accept_invitation", args=[token])
        body = render_to_string(
            "accounts/email/invitation.txt",
            {"org": org, "inviter": by.user, "link": link, "invitation": invitation},
        )
        # The token appears in this email alone; it is sent once the invitation is stored.
        # The subject is a header: a name stored before names were checked must not break it.
        subject = f"Join {printable(org.name)} on Excloud"
        transaction.on_commit(lambda: send_mail(subject, body, None, [email]))
    return invitation


def find_invitation(token: str) -> Invitation | None:
    return Invitation.objects.select_related("org").filter(token_hash=hash_token(token)).first()


def accept_invitation(token: str, user: User, actor: Actor) -> Membership:
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("org")
            .filter(token_hash=hash_token(token))
            .first()
        )
        if invitation is None or not invitation.is_pending:
            raise MembershipError("This invitation is no longer valid. Ask for a new one.")
        if invitation.email.lower() != user.email.lower():
            raise MembershipError(
                f"This invitation is for {invitation.email}. "
                "Sign in with that address to accept it."
            )
        if not _inviter_may_still_invite(invitation):
            raise MembershipError(
                "This invitation is no longer valid: whoever sent it can no longer invite "
                "people to this role. Ask for a new one."
            )
        membership, created = Membership.objects.get_or_create(
            org=invitation.org, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        record(
            actor,
            AuditAction.MEMBER_JOINED,
            org=invitation.org,
            target_type=TargetType.USER,
            target_id=str(user.pk),
            details={"email": user.email, "role": membership.role, "invitation": invitation.pk},
        )
    return membership


def _inviter_may_still_invite(invitation: Invitation) -> bool:
    """Whether the invitation's sender is still in the org with a role that may give its role.

    Demotions and removals withdraw the sender's invitations as they happen; this check
    also covers invitations that were pending before they did.
    """
    inviter = (
        Membership.objects.select_related("user")
        .filter(org_id=invitation.org_id, user_id=invitation.invited_by_id)
        .first()
    )
    return (
        inviter is not None
        and inviter.user.is_active
        and invitation.role in dict(inviter.assignable_roles())
    )


def _withdraw_invitations_from(
    member: Membership, actor: Actor, still_allowed: Iterable[str] = ()
) -> None:
    """Withdraw the member's pending invitations to roles other than ``still_allowed``.

    Called in the transaction that demotes or removes them, so an invitation never outlives
    its sender's right to send it.
    """
    invitations = list(
        Invitation.objects.select_for_update(of=("self",))
        .select_related("org")
        .pending()
        .filter(org_id=member.org_id, invited_by_id=member.user_id)
        .exclude(role__in=list(still_allowed))
        .order_by("pk")
    )
    if not invitations:
        return
    Invitation.objects.filter(pk__in=[i.pk for i in invitations]).update(revoked_at=timezone.now())
    for invitation in invitations:
        record(
            actor,
            AuditAction.INVITATION_REVOKED,
            org=invitation.org,
            target_type=TargetType.INVITATION,
            target_id=str(invitation.pk),
            details={
                "email": invitation.email,
                "role": invitation.role,
                "invited_by": member.user.email,
                "reason": "inviter_lost_access",
            },
        )


def revoke_invitation(by: Membership, actor: Actor, invitation: Invitation) -> None:
    if not by.can_manage_members or (invitation.role == Role.OWNER and by.role != Role.OWNER):
        raise PermissionDenied("Only owners withdraw invitations to become an owner.")
    with transaction.atomic():
        changed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if not changed:
            raise MembershipError("That invitation was already used or withdrawn.")
        record(
            actor,
            AuditAction.MEMBER_INVITATION_REVOKED,
            org=by.org,
            target_type=TargetType.INVITATION,
            target_id=str(invitation.pk),
            details={"email": invitation.email},
        )


def _lock_owners(org: Organization) -> list[Membership]:
    """Lock the org's owner rows so two changes cannot both remove 'the other' owner."""
    return list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER))


def change_role(by: Membership, actor: Actor, target: Membership, role: str) -> Membership:
    if not by.can_manage_member(target) or role not in dict(by.assignable_roles()):
        raise PermissionDenied("You cannot give that role to this member.")
    with transaction.atomic():
        owners = _lock_owners(by.org)
        target = Membership.objects.select_for_update().get(pk=target.pk)
        if target.role == role:
            raise MembershipError(
                f"{target.user.email} is already {target.get_role_display().lower()}."
            )
        if target.role == Role.OWNER and len(owners) == 1:
            raise MembershipError("An organisation needs an owner: make someone else owner first.")
        old = target.role
        target.role = role
        target.save(update_fields=["role"])
        record(
            actor,
            AuditAction.MEMBER_ROLE_CHANGED,
            org=by.org,
            target_type=TargetType.USER,
            target_id=str(target.user_id),
            details={"email": target.user.email, "from": old, "to": role},
        )
        _withdraw_invitations_from(target, actor, still_allowed=dict(target.assignable_roles()))
    return target


def remove_member(by: Membership, actor: Actor, target: Membership) -> None:
    if not by.can_manage_member(target):
        raise PermissionDenied("You cannot remove this member.")
    with transaction.atomic():
        owners = _lock_owners(by.org)
        target = Membership.objects.select_for_update().select_related("user").get(pk=target.pk)
        if target.role == Role.OWNER and len(owners) == 1:
            raise MembershipError("The last owner cannot be removed.")
        target.delete()
        record(
            actor,
            AuditAction.MEMBER_REMOVED,
            org=by.org,
            target_type=TargetType.USER,
            target_id=str(target.user_id),
            details={"email": target.user.email, "role": target.role},
        )
        # What the member could do on the org's behalf ends with their membership: a token
        # would otherwise work again if they were ever re-added.
        _withdraw_invitations_from(target, actor)
        tokens.revoke_api_tokens(
            ApiToken.objects.filter(org_id=target.org_id, user_id=target.user_id),
            actor,
            by_user_id=by.user_id,
            reason="member_removed",
        )


def set_two_factor_requirement(by: Membership, actor: Actor, required: bool) -> bool:
    """Require (or stop requiring) a second factor of every member. Owners only.

    An owner without a second factor of their own cannot require one: they would lock
    themselves out. Returns whether anything changed.
    """
    if by.role != Role.OWNER:
        raise PermissionDenied("Only owners decide whether two-factor sign-in is required.")
    if required and not user_has_device(by.user):
        raise MembershipError(
            "Set up two-factor sign-in for your own account first (Security, in the top bar), "
            "then require it of everyone."
        )
    with transaction.atomic():
        changed = Organization.objects.filter(pk=by.org_id, require_two_factor=not required).update(
            require_two_factor=required
        )
        if changed:
            record(
                actor,
                AuditAction.ORG_TWO_FACTOR_REQUIRED
                if required
                else AuditAction.ORG_TWO_FACTOR_NOT_REQUIRED,
                org=by.org,
                target_type=TargetType.ORG,
                target_id=by.org.slug,
                details={"name": by.org.name},
            )
    by.org.require_two_factor = required
    return bool(changed)
