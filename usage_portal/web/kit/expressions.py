"""Query expressions the list selectors share: aggregates over correlated subqueries.

``Subquery(qs.annotate(n=SubqueryCount()).values("n"))`` counts a correlated subquery's rows
without a ``GROUP BY`` on the outer query, so a list's cost does not grow with its joins.
"""

from __future__ import annotations

from django.db.models import Func, IntegerField


class SubqueryCount(Func):
    """``COUNT(*)`` over a correlated subquery's rows: no ``GROUP BY``, 0 when none match."""

    template = "COUNT(*)"
    output_field = IntegerField()


class SubqueryMax(Func):
    """``MAX(field)`` over a correlated subquery's rows (NULL when none match)."""

    function = "MAX"
