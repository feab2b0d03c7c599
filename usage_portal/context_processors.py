from django.conf import settings


def portal(request):
    """Values every page's chrome needs."""
    user = getattr(request, "user", None)
    roles = []
    if user is not None and user.is_authenticated:
        roles = [g.name for g in user.groups.all()] or (["Admin"] if user.is_superuser else [])
    return {
        "portal_roles": roles,
        "label_refresh_delay_hours": settings.LABEL_REFRESH_DELAY_HOURS,
    }
