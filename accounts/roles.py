"""The three human roles as groups, with their permissions declared in one table; which roles an
identity provider's groups grant (single sign-on, docs/sso.md); which users an e-mail names."""

from collections.abc import Iterable, Mapping

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

APPS = ("accounts", "instances", "scoring")

#: Permission codenames per role; "view_*" expands to every model's view permission.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "Viewer": ("view_*",),
    "CSM": (
        "view_*",
        "accounts.set_sentiment",
        "instances.label_instance",
        "instances.upload_pings",
    ),
    "Ops": (
        "view_*",
        "add_*",
        "change_*",
        "delete_*",
        "accounts.set_sentiment",
        "accounts.edit_any_account",
        "instances.label_instance",
        "instances.upload_pings",
        "instances.map_license",
        "instances.apply_label_change_now",
        "scoring.download_exports",
    ),
}

#: The audit trail is never edited, not even by ops.
READ_ONLY_MODELS = {
    "labelchange",
    "scoresnapshot",
    "schemechange",
    "healthalert",
    "healthalertevent",
    "digestsent",
    "auditevent",  # append-only (accounts.audit); the model and a trigger refuse edits too
    "licensemappingchange",
    "adminjob",  # written by the background job's task alone
}


def _resolve(patterns: tuple[str, ...]) -> list[Permission]:
    perms = Permission.objects.filter(content_type__app_label__in=APPS).select_related(
        "content_type"
    )
    chosen = []
    for perm in perms:
        model = perm.content_type.model
        for pattern in patterns:
            if pattern.endswith("_*"):
                action = pattern[:-1]
                if perm.codename == f"{action}{model}" and (
                    action == "view_" or model not in READ_ONLY_MODELS
                ):
                    chosen.append(perm)
                    break
            elif pattern == f"{perm.content_type.app_label}.{perm.codename}":
                chosen.append(perm)
                break
    return chosen


def sync_roles(**kwargs) -> None:
    """Create or update the role groups so they hold exactly the declared permissions."""
    for role, patterns in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_resolve(patterns))


def roles_for_groups(claimed, role_groups: Mapping[str, Iterable[str]]) -> set[str]:
    """The roles an identity provider's groups claim grants: each role one of whose configured
    groups (``OIDC_ROLE_GROUPS``) the person is in, compared without regard to case.

    ``claimed`` is the claim as the provider sent it: a list, one group as a string, or missing
    (None). Anything else grants nothing, so a malformed claim can never widen access. A person
    may hold several roles (an ops engineer who also owns accounts).
    """
    if isinstance(claimed, str):
        claimed = [claimed]
    if not isinstance(claimed, list | tuple):
        return set()
    have = {g.strip().casefold() for g in claimed if isinstance(g, str) and g.strip()}
    return {
        role
        for role, groups in role_groups.items()
        if role in ROLE_PERMISSIONS and have & {g.strip().casefold() for g in groups}
    }


def users_with_email(email: str):
    """The users whose e-mail address is ``email``, without regard to case: how a person who
    signs in through single sign-on, and a CRM file's CSM column, find their portal user."""
    users = get_user_model().objects
    email = email.strip()
    return users.filter(email__iexact=email) if email else users.none()
