from django.conf import settings

from usage_portal.version import portal_version


def _roles(request) -> list[str]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return [g.name for g in user.groups.all()] or (["Admin"] if user.is_superuser else [])


def portal(request):
    """Values every page's chrome needs.

    Cached on the request: django-tables2 renders each table with the context processors again,
    and the roles must not cost a query per table.
    """
    roles = getattr(request, "_portal_roles", None)
    if roles is None:
        roles = request._portal_roles = _roles(request)
    return {
        "portal_roles": roles,
        "label_refresh_delay_hours": settings.LABEL_REFRESH_DELAY_HOURS,
        # The footer's, as /healthz reports it: which release a screenshot or a report came from.
        "portal_version": portal_version(),
    }
