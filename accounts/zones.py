"""Which time zones the portal knows: the IANA names a person may choose and a browser may send.

Pure: the standard library's tz database (``zoneinfo``) and nothing else. The profile's choice
(``accounts.models.UserPreferences``), its form and the request's zone
(``usage_portal.web.timezones``) all ask here, so a name one of them accepts the others accept.
Times are stored in UTC whatever the zone: a zone only changes how they read.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, available_timezones

#: Files of the tz database that are not places: "localtime" is whatever zone this machine is
#: set to (it would differ between servers), "posixrules" a rule file, "Factory" reads "-00".
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})

#: The longest name kept (the database's longest is 32 characters).
MAX_NAME_LENGTH = 64

#: The regions the tz database files places under, in the order a choice lists them. Names
#: outside them (aliases such as "US/Eastern", "Etc/GMT+5") are known but not offered.
REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@cache
def zone_names() -> frozenset[str]:
    """Every zone name the portal accepts."""
    return frozenset(available_timezones()) - _NOT_ZONES


def zone_named(name: object) -> ZoneInfo | None:
    """The zone ``name`` names, or None for anything else: unknown, malformed or hostile text
    is never handed to ``ZoneInfo`` (which would read a path such as "../../etc/passwd")."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or name not in zone_names():
        return None
    return ZoneInfo(name)


@cache
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """The places' zones by region, each as (name, label), for a grouped choice:
    ``("Europe", (("Europe/Amsterdam", "Amsterdam"), …))``. UTC is not among them."""
    groups = []
    for region in REGIONS:
        names = sorted(n for n in zone_names() if n.startswith(f"{region}/"))
        labels = tuple((n, n.removeprefix(f"{region}/").replace("_", " ")) for n in names)
        if labels:
            groups.append((region, labels))
    return tuple(groups)
