"""The inline styles the Content-Security-Policy allows, each by its hash (settings.py).

Scripts and styles come from the portal's own static files (``'self'``). Three inline
stylesheets are needed, and each is allowed by the SHA-256 of its exact text, so an injected
``<style>`` with any other content is still refused:

- the standalone error layout's ``<style>``: the 500 and 503 pages must render when the static
  files (or their manifest) are what failed, so their styles are inline;
- the empty ``<style>`` plotly.js adds for its own rules (hover, the mode bar, drag cursors):
  the element is empty and the rules go in through the CSSOM, which CSP does not govern;
- the stylesheet plotly.js's bundle writes when it loads (MapLibre's, for map traces): read
  from the installed bundle, so an upgrade of plotly carries its own hash along.

The browser test (tests/web/test_csp_browser.py) fails on any violation, so a plotly release
that injects a stylesheet some other way is caught there.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from usage_portal.staticfinders import PACKAGE_DATA, PUBLISHED

_STYLE_ELEMENT = re.compile(r"<style>(.*?)</style>", re.DOTALL)
# In the minified bundle: var e=document.createElement("style");e.id="…",e.textContent=`…`
_BUNDLED_STYLE = re.compile(r'createElement\("style"\)[^`]{0,300}?\.textContent=`([^`]*)`')


def source_hash(text: str) -> str:
    """The CSP hash source (``'sha256-…'``) that allows an inline style of exactly ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


#: plotly.js's own style element, empty (``document.createTextNode("")``).
EMPTY_STYLE = source_hash("")


def template_styles(template: Path) -> list[str]:
    """The hash of each ``<style>`` element of a template written without template tags in it."""
    return [source_hash(css) for css in _STYLE_ELEMENT.findall(template.read_text())]


def bundled_styles(script: Path) -> list[str]:
    """The hash of each stylesheet a JavaScript bundle writes into a ``<style>`` element."""
    return [
        source_hash(css)
        for css in _BUNDLED_STYLE.findall(script.read_text(encoding="utf-8"))
        # A template literal with escapes or ${} evaluates to other text: its hash would not match.
        if "\\" not in css and "${" not in css
    ]


def plotly_styles() -> list[str]:
    """The hashes of the styles the published plotly.js adds to a page (see the module)."""
    bundles = [PACKAGE_DATA / name for name in PUBLISHED if name.endswith(".js")]
    return [EMPTY_STYLE, *(found for bundle in bundles for found in bundled_styles(bundle))]
