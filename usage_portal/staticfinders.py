"""plotly.js served from the installed plotly package: only the file the pages load.

The pages load ``vendor/plotly/plotly.min.js`` (``templates/partials/plotly.html``), taken from
the plotly package itself so the browser's copy never drifts from the Python one. A
``STATICFILES_DIRS`` entry for plotly's ``package_data`` published all of it: its datasets, its
templates and the 5 MB Jupyter widget bundle, collected, hashed and compressed on every deploy
and served to anyone who asked. This finder offers the listed files and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles import finders, utils
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PACKAGE_DATA = Path(plotly.__file__).resolve().parent / "package_data"
PREFIX = "vendor/plotly"
#: The files of plotly's package_data a page loads, by their name there.
PUBLISHED = ("plotly.min.js",)


class PlotlyFinder(finders.BaseFinder):
    """``vendor/plotly/<name>`` for each name in ``PUBLISHED``, from plotly's package_data."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=PACKAGE_DATA)
        # collectstatic writes a listed file under the storage's prefix, as for a prefixed
        # STATICFILES_DIRS entry.
        self.storage.prefix = PREFIX

    def check(self, **kwargs):
        return [
            Error(
                f"plotly's package_data has no {name} (plotly {plotly.__version__})",
                hint="Reinstall plotly, or update PUBLISHED in usage_portal/staticfinders.py.",
                id="usage_portal.E001",
            )
            for name in PUBLISHED
            if not (PACKAGE_DATA / name).is_file()
        ]

    def find(self, path, find_all=False, **kwargs):
        find_all = self._check_deprecated_find_param(find_all=find_all, **kwargs)
        folder, _, name = path.rpartition("/")
        found = []
        if folder == PREFIX and name in PUBLISHED:
            if str(PACKAGE_DATA) not in finders.searched_locations:
                finders.searched_locations.append(str(PACKAGE_DATA))
            if (PACKAGE_DATA / name).is_file():
                found.append(str(PACKAGE_DATA / name))
        # As Django's finders: the first match, or the (empty) list of them.
        return found[0] if found and not find_all else found

    def list(self, ignore_patterns):
        for name in PUBLISHED:
            if not utils.matches_patterns(name, ignore_patterns or ()):
                yield name, self.storage
