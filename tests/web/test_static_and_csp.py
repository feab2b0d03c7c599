"""What the portal publishes as static files, and the Content-Security-Policy on its pages.

collectstatic used to publish the whole of plotly's package_data (its datasets, templates and
the Jupyter widget bundle) for the one plotly.min.js the pages load; and no page carried a
policy, so markup that slipped past escaping could run script. The browser half, that every
kind of page renders under the policy, is tests/web/test_csp_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from tests.conftest import PASSWORD
from usage_portal import contentpolicy, staticfinders

ROOT = Path(__file__).resolve().parents[2]
PLOTLY = "vendor/plotly/plotly.min.js"
PLAIN_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.strip().split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


# --------------------------------------------------------------------------------------------------
# Static files


def test_collectstatic_publishes_plotly_js_and_nothing_else_of_the_package(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = PLAIN_STORAGES

    call_command("collectstatic", "--noinput", verbosity=0)

    collected = {p.relative_to(tmp_path).as_posix(): p for p in tmp_path.rglob("*") if p.is_file()}
    assert PLOTLY in collected
    assert (
        collected[PLOTLY].read_bytes()
        == (staticfinders.PACKAGE_DATA / "plotly.min.js").read_bytes()
    )
    assert [name for name in collected if name.startswith("vendor/plotly/")] == [PLOTLY]
    assert not any(
        word in name for name in collected for word in ("datasets", "widgetbundle", ".csv")
    )
    # The pages' own files are published as before.
    assert {"js/charts.js", "js/portal.js", "css/portal.css", "admin/css/base.css"} <= set(
        collected
    )
    # plotly.min.js is ~4.8 MB, Django's admin ~1.8 MB, the portal's own files ~0.1 MB (with all
    # of package_data it was over 11 MB).
    assert sum(p.stat().st_size for p in collected.values()) < 8 * 1024 * 1024


def test_the_finder_finds_only_the_published_file():
    assert finders.find(PLOTLY) == str(staticfinders.PACKAGE_DATA / "plotly.min.js")
    assert finders.find(PLOTLY, find_all=True) == [
        str(staticfinders.PACKAGE_DATA / "plotly.min.js")
    ]
    for unpublished in ("widgetbundle.js", "datasets/iris.csv.gz", "../plotly.min.js"):
        assert finders.find(f"vendor/plotly/{unpublished}") is None
    assert finders.find("plotly.min.js") is None  # only under its prefix


def test_the_page_that_loads_plotly_names_the_published_file():
    partial = (ROOT / "templates" / "partials" / "plotly.html").read_text()
    loaded = re.findall(r"static '(vendor/plotly/[^']+)'", partial)
    assert loaded == [f"{staticfinders.PREFIX}/{name}" for name in staticfinders.PUBLISHED]


def test_the_finder_reports_a_plotly_without_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(staticfinders, "PACKAGE_DATA", tmp_path)
    assert [error.id for error in staticfinders.PlotlyFinder().check()] == ["usage_portal.E001"]
    monkeypatch.undo()
    assert staticfinders.PlotlyFinder().check() == []


# --------------------------------------------------------------------------------------------------
# The policy


@pytest.fixture
def signed_in(db, viewer) -> Client:
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)
    return client


def test_every_page_carries_the_policy_scripts_from_the_portal_only(signed_in):
    header = signed_in.get("/")["Content-Security-Policy"]
    policy = _policy(header)

    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["style-src"][0] == "'self'"
    assert all(source.startswith("'sha256-") for source in policy["style-src"][1:])
    assert "'unsafe-inline'" not in header


def test_the_login_page_and_the_ping_endpoint_carry_it_too(db):
    client = Client()
    assert "script-src 'self'" in client.get("/login/")["Content-Security-Policy"]
    assert "Content-Security-Policy" in client.post("/usage_data", b"{}", "application/json")


def test_the_error_page_style_is_allowed_by_the_hash_of_what_is_served(signed_in, monkeypatch):
    """The 500 page's inline <style> as rendered, hashed, is a source of the policy it carries."""

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr("usage_portal.web.dashboard.views.DashboardView.get_queryset", boom)
    signed_in.raise_request_exception = False

    response = signed_in.get("/")

    assert response.status_code == 500
    css = re.search(r"<style>(.*?)</style>", response.content.decode(), re.DOTALL).group(1)
    assert (
        contentpolicy.source_hash(css) in _policy(response["Content-Security-Policy"])["style-src"]
    )


def test_every_style_plotly_writes_is_allowed():
    """plotly.js writes its empty rules sheet and each bundled stylesheet: all hashed, none left.

    A plotly release that writes a <style> another way fails here (and in the browser test).
    """
    bundle = (staticfinders.PACKAGE_DATA / "plotly.min.js").read_text(encoding="utf-8")
    sheets = contentpolicy.bundled_styles(staticfinders.PACKAGE_DATA / "plotly.min.js")
    # One createElement("style") is the empty rules sheet, each other one a bundled sheet.
    assert bundle.count('createElement("style")') == 1 + len(sheets)
    assert 'createTextNode("")' in bundle
    allowed = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"]
    assert {contentpolicy.EMPTY_STYLE, *sheets} <= set(allowed)
    assert contentpolicy.EMPTY_STYLE == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"


def test_a_bundled_sheet_with_escapes_is_not_hashed(tmp_path):
    script = tmp_path / "bundle.js"
    script.write_text(
        'var a=document.createElement("style");a.id="x",a.textContent=`.a{color:red}`;'
        'var b=document.createElement("style");b.id="y",b.textContent=`.b{content:"\\2014"}`;'
    )
    assert contentpolicy.bundled_styles(script) == [contentpolicy.source_hash(".a{color:red}")]


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.I)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_needs_an_inline_script_or_style(template):
    """The policy refuses them; a template that has one would break under it."""
    text = template.read_text()
    assert not INLINE_SCRIPT.search(text)
    assert not INLINE_HANDLER.search(text)
    assert not STYLE_ATTRIBUTE.search(text)
    if template.name != "standalone_error.html":
        assert "<style" not in text
