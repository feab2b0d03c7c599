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

Under that first level, a second keyed by content (``cached_content``): a write moves the
version of the whole account, though most writes change what one section shows, or nothing it
shows (a ping of a test instance leaves the Scorecard as it was). A section that misses the first
level loads its rows again (its queries, which it needs to know what it would show) and takes
the finished section from the second level when those rows, and everything else it prints, are
the ones it was last built from: the shaping and rendering, most of a first view's cost, are
done once per content, not once per version. ``cached_pieces`` does the same per table row.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db.models import Model
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
    if _off():
        return build()
    return _through_cache(key(company, part, *variant), build)


def _off() -> bool:
    return settings.C360_CACHE_SECONDS <= 0 or _CACHE_FAILED.get()


def caching() -> bool:
    """Whether parts are looked up in the cache now (not turned off, not failed just now): a
    signature that costs a query is worth computing only then."""
    return not _off()


#: Set while a part is built because the cache just failed: the levels under it (content,
#: pieces) build without asking it, so that a hung cache costs a page one timeout, not one each.
_CACHE_FAILED: ContextVar[bool] = ContextVar("c360_cache_failed", default=False)


def _without_cache(build: Callable[[], T]) -> T:
    token = _CACHE_FAILED.set(True)
    try:
        return build()
    finally:
        _CACHE_FAILED.reset(token)


def _through_cache(name: str, build: Callable[[], T]) -> T:
    try:
        hit = cache.get(name)
    except Exception:  # an unreachable cache must not take the page down
        logger.warning("C360 cache unavailable; building %s", name, exc_info=True)
        return _without_cache(build)
    if hit is not None:
        return hit
    value = build()
    try:
        cache.set(name, value, settings.C360_CACHE_SECONDS)
    except Exception:
        logger.warning("C360 cache unavailable; not keeping %s", name, exc_info=True)
    return value


def row_values(obj: Model) -> tuple:
    """Every stored column of a loaded model instance: its row, as a signature's part.

    Read from what was loaded: a column the query left out (``only``) is None here, never
    fetched. The account's ``updated_at`` is not content (it is the version) and is left out,
    so that a signature holding the account's row stays the same across versions.
    """
    loaded = obj.__dict__
    return tuple([loaded.get(name) for name in _columns(type(obj))])


@functools.cache
def _columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(
        f.attname
        for f in model._meta.concrete_fields
        if not (model is Company and f.attname == "updated_at")
    )


def _content_name(kind: str, signature: object, reader: tuple[str, str]) -> str:
    digest = hashlib.blake2b(signature_bytes((signature, reader)), digest_size=16).hexdigest()
    return f"c360:{code_version()}:{kind}:{digest}"


def signature_bytes(signature: object) -> bytes:
    """``signature`` written out for its digest: with orjson, 20 times ``repr``'s speed (the
    NOT Production report's 1,264 monthly rows: 0.07 ms, not 1.45 ms).

    JSON types, dates and moments (with their offset), dataclasses, tuples (as lists) and
    int-or-date keys come out as they are, sets sorted; anything else as its type and
    ``repr``. Two signatures of one part hold the same types at the same places (one code
    version builds both: ``code_version`` is in the key), so equal text means equal values.
    """
    return orjson.dumps(signature, default=_other, option=orjson.OPT_NON_STR_KEYS)


def _other(value: object) -> object:
    if isinstance(value, (set, frozenset)):  # in an order no process's string hashing sets
        return sorted(value, key=repr)
    if isinstance(value, Mapping):  # a scheme's read-only tables
        return dict(value)
    return f"{type(value).__qualname__}:{value!r}"


def cached_content(kind: str, signature: object, build: Callable[[], T]) -> T:
    """``build()``'s result keyed by a digest of ``signature``, built if missing.

    ``signature`` holds every value the result is built from (rows as ``row_values``, the
    visitor's variant, settings it prints, the day when it depends on it; the reader's language
    and zone are added here): an entry is never stale, and serves every version of the account
    whose data for it is the same. Its life is ``C360_CACHE_SECONDS``, as the first level's.
    The cache is a speed-up, never a dependency: if it fails, the result is built and served.
    """
    if _off():
        return build()
    return _through_cache(_content_name(kind, signature, _reader()), build)


def cached_pieces(kind: str, pieces: Sequence[tuple[object, Callable[[], str]]]) -> list[str]:
    """HTML pieces keyed by everything they show: ``(signature, build)`` pairs, built if missing.

    A piece's key is a digest of its ``signature`` (every value its markup prints), so an entry
    is never stale and outlives account versions: after a ping, the Instances table re-renders
    one row, not 81. One ``get_many`` for all pieces; a failing cache builds them all.
    """
    if _off():
        return [build() for _, build in pieces]
    reader = _reader()
    names = [_content_name(kind, signature, reader) for signature, _ in pieces]
    try:
        hits = cache.get_many(names)
    except Exception:
        logger.warning("C360 cache unavailable; building every %s", kind, exc_info=True)
        return _without_cache(lambda: [build() for _, build in pieces])
    out, fresh = [], {}
    for name, (_, build) in zip(names, pieces, strict=True):
        html = hits.get(name)
        if html is None:
            html = fresh[name] = build()
        out.append(html)
    if fresh:
        try:
            cache.set_many(fresh, settings.C360_CACHE_SECONDS)
        except Exception:
            logger.warning("C360 cache unavailable; not keeping %s pieces", kind, exc_info=True)
    return out


def csrf_fill(html: str, request) -> SafeString:
    """Cached HTML with the request's CSRF token where the placeholder is."""
    if CSRF_PLACEHOLDER not in html:
        return html
    return mark_safe(html.replace(CSRF_PLACEHOLDER, get_token(request)))
