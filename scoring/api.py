"""Data out: the health API, the health CSV and the instance-type export download."""

from django.http import Http404


def _todo(*args, **kwargs):
    raise Http404("not built yet")


account_health = health_csv = instance_types = _todo
