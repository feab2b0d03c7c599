"""Cross-account reports: CSM Burn-Down, versions, data quality, metrics dictionary."""

from django.http import Http404


def _todo(*args, **kwargs):
    raise Http404("not built yet")


burndown = versions = data_quality = license_map = metrics_dictionary = _todo
