"""The three human roles as groups, with their permissions declared in one table."""

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
