"""``{{ when|moment }}``: a moment as the pages show it, "5 Dec 2026 14:03 CET", in the
reader's zone (``usage_portal.web.timezones.moment_text``, the one format Python text uses too).
``{% load moments %}`` in a template that prints one."""

from django import template

from usage_portal.web.timezones import moment_text

register = template.Library()


@register.filter(expects_localtime=False)
def moment(value) -> str:
    """An aware datetime (a naive one is UTC), "" for None or anything else."""
    try:
        return moment_text(value) if value else ""
    except (AttributeError, TypeError, ValueError):
        return ""
