"""The C360 sections' heavy parts, cached per account and data version.

A section's rows, charts and explanations depend only on the account's data, so they are built
once per version and reused: the key holds ``Company.updated_at``, which every write that changes
what these pages show moves forward in its own transaction (``CompanyQuerySet.touch``: pings,
mappings, imports, label requests and applies, sentiment, score refreshes). A page reads the
account row anyway, so finding its version costs no query, and an entry built from older data is
never served once the change is committed. ``C360_CACHE_SECONDS`` bounds what depends on the
clock rather than the data (an instance going silent past the stale limit); 0 turns caching off.

What differs between people is in the key (``variant``: may they label, apply now; a setting the
parts print, such as the stale limit; always the language and the reader's time zone, which
every printed moment is in) or is put in afterwards: the CSRF token is a placeholder in
the cached HTML (``csrf_fill``). The key also holds a digest of the code that builds the parts
(``code_version``), so a deploy starts afresh. ``sections`` holds the builders.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.middleware.csrf import get_token
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language

from accounts.models import Company

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Stands for the request's CSRF token in cached HTML. Hostnames, account names and notes are in
#: that HTML too, so data must never be able to spell it, or ``csrf_fill`` would print the
#: viewer's token in their place. It is wrapped in ``<`` and ``>``, which Django's escaping
#: (autoescape, ``escape``, ``format_html``) always turns into ``&lt;`` and ``&gt;`` in text it
#: prints: only markup can hold it. It is safe markup, so the template prints it as it is
#: (``value="<…>"`` is valid HTML). A random per-process placeholder would not do: the cache is
#: shared (Redis), and rows one process builds are filled by another.
CSRF_PLACEHOLDER = mark_safe("<csrf-token-placeholder-6f1d>")  # noqa: S308 - a constant


@functools.cache
def code_version() -> str:
    """A digest of the code and templates that build the parts: a deploy starts afresh (an
    entry built by older code could hold other markup, or objects of another shape)."""
    digest = hashlib.blake2b(digest_size=8)
    root = Path(settings.BASE_DIR)
    for folder in ("accounts", "instances", "scoring", "usage_portal", "templates"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".py", ".html") and "migrations" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def key(company: Company, part: str, *variant) -> str:
    """``c360:<code>:<account>:<version>:<part>:<digest of variant, language and zone>``."""
    version = company.updated_at.isoformat() if company.updated_at else "-"
    detail = hashlib.blake2b(repr((variant, _reader())).encode(), digest_size=12).hexdigest()
    return f"c360:{code_version()}:{company.pk}:{version}:{part}:{detail}"


def _reader() -> tuple[str, str]:
    """What every cached part depends on besides its data: the language and the time zone its
    moments are printed in (``usage_portal.web.timezones``)."""
    return get_language(), get_current_timezone_name()


def cached(company: Company, part: str, build: Callable[[], T], *variant) -> T:
    """``build()``'s result for this account version, from the cache when it is there.

    The cache is a speed-up, never a dependency: if it fails, the part is built and served.
    """
    seconds = settings.C360_CACHE_SECONDS
    if seconds <= 0:
        return build()
    name = key(company, part, *variant)
    try:
        hit = cache.get(name)
    except Exception:  # an unreachable cache must not take the page down
        logger.warning("C360 cache unavailable; building %s", name, exc_info=True)
        return build()
    if hit is not None:
        return hit
    value = build()
    try:
        cache.set(name, value, seconds)
    except Exception:
        logger.warning("C360 cache unavailable; not keeping %s", name, exc_info=True)
    return value


def cached_pieces(kind: str, pieces: Sequence[tuple[object, Callable[[], str]]]) -> list[str]:
    """HTML pieces keyed by everything they show: ``(signature, build)`` pairs, built if missing.

    A piece's key is a digest of its ``signature`` (every value its markup prints), so an entry
    is never stale and outlives account versions: after a ping, the Instances table re-renders
    one row, not 81. One ``get_many`` for all pieces; a failing cache builds them all.
    """
    seconds = settings.C360_CACHE_SECONDS
    if seconds <= 0:
        return [build() for _, build in pieces]
    reader = _reader()
    names = [
        f"c360:{code_version()}:{kind}:"
        + hashlib.blake2b(repr((signature, reader)).encode(), digest_size=16).hexdigest()
        for signature, _ in pieces
    ]
    try:
        hits = cache.get_many(names)
    except Exception:
        logger.warning("C360 cache unavailable; building every %s", kind, exc_info=True)
        hits = {}
    out, fresh = [], {}
    for name, (_, build) in zip(names, pieces, strict=True):
        html = hits.get(name)
        if html is None:
            html = fresh[name] = build()
        out.append(html)
    if fresh:
        try:
            cache.set_many(fresh, seconds)
        except Exception:
            logger.warning("C360 cache unavailable; not keeping %s pieces", kind, exc_info=True)
    return out


def csrf_fill(html: str, request) -> SafeString:
    """Cached HTML with the request's CSRF token where the placeholder is."""
    if CSRF_PLACEHOLDER not in html:
        return html
    return mark_safe(html.replace(CSRF_PLACEHOLDER, get_token(request)))
