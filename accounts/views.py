"""Account C360 pages: Summary, User Adoption Metrics, Usage Trends, Instances, Scorecard."""

from django.http import Http404


def _todo(*args, **kwargs):
    raise Http404("not built yet")


summary = adoption = trends = instances = instance_edit = scorecard = sentiment = _todo
label_change_apply_now = _todo
