"""The health-scoring methodology as pure functions over plain data.

Implements ``docs/methodology.md``: which instances count, how their pings combine, each
measure's value and colour, and the use-case, product-usage and overall roll-ups. Every
threshold and weight comes from a :class:`~scoring.schemes.Scheme`; nothing here is a business
constant. No Django, no I/O: callers load :class:`~scoring.scorecard.CompanyInputs` and store
the :class:`~scoring.scorecard.Scorecard` (the data types live in ``scoring/scorecard.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from instances.versions import release

from .overall import (
    overall_health,
    score_engagement,
    score_outcomes,
    score_sentiment,
    score_voice,
    weighted_mean,
)
from .schemes import (
    ADOPTION_USE_CASES,
    GREEN,
    LICENSED_SEATS,
    METRICS,
    NA,
    USE_CASE_LABELS,
    AgeColumn,
    Color,
    MeasureSpec,
    Scheme,
    classify,
)
from .scorecard import CompanyInputs, InstanceCandidate, MeasureResult, Scorecard, Selection

PRODUCTION = "production"
OPT_OUT = "opt_out"
ACTIVE = "active"  # a subscription's status while it runs
TOO_EARLY = "too early to score: first 30 days"
NO_PING = "no usage ping received"
# New SaaS namespaces are Production; one never labelled (blank/unknown) still counts as such.
SAAS_PRODUCTION_TYPES = frozenset({PRODUCTION, "unknown", ""})

# --------------------------------------------------------------------------- small helpers


def sum_or_none(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any value is unknown or there is none: an unknown part makes a
    total unknown, never smaller (the one NULL-summing rule of scores, history and charts)."""
    total: float = 0
    seen = False
    for value in values:
        if value is None:
            return None
        total += value
        seen = True
    return total if seen else None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def account_age_months(customer_since: date | None, as_of: date) -> int | None:
    """Whole calendar months from ``customer_since`` to ``as_of`` (0 if in the future).

    A month counts once its day-of-month is reached: Jan 15 → Mar 14 is 1, → Mar 15 is 2.
    """
    if customer_since is None:
        return None
    months = (as_of.year - customer_since.year) * 12 + as_of.month - customer_since.month
    if as_of.day < customer_since.day:
        months -= 1
    return max(months, 0)


def month_starts_between(customer_since: date | None, as_of: date) -> int | None:
    """The dbt model's account age: month starts from the customer-since month to ``as_of``'s.

    Calendar months, whatever the day: Jan 31 → Feb 1 is 1, Jan 1 → Jan 31 is 0.
    """
    if customer_since is None:
        return None
    return max((as_of.year - customer_since.year) * 12 + as_of.month - customer_since.month, 0)


def account_age(customer_since: date | None, as_of: date, scheme: Scheme) -> int | None:
    """The account's age in months as ``scheme`` counts it (``Scheme.age_basis``)."""
    if scheme.age_basis == "month_starts":
        return month_starts_between(customer_since, as_of)
    return account_age_months(customer_since, as_of)


def roll_up(points: Sequence[float | None], scheme: Scheme) -> tuple[float | None, Color]:
    """Mean of the non-NA ``points`` and its colour under ``scheme.score_bands``.

    All NA (or empty) → ``(None, "NA")``. Full precision is kept: 62.5, 87.5, 62.5 → 70.833….
    """
    scored = [p for p in points if p is not None]
    if not scored:
        return None, NA
    value = sum(scored) / len(scored)
    return value, classify(value, scheme.score_bands)


# --------------------------------------------------------------------------- selection


def health_exclusion(*, instance_type: str, health_inclusion: str, is_saas: bool) -> str | None:
    """Why labels keep an instance out of health measures, or None if they let it in.

    The one health-eligibility rule (methodology §1): applied type Production (a SaaS namespace
    also when never labeled) and health inclusion not Opt-Out. Pages ask it of each instance,
    and ``InstanceQuerySet.health_eligible`` states it as a filter from the same constants.
    """
    is_production = instance_type == PRODUCTION or (
        is_saas and instance_type in SAAS_PRODUCTION_TYPES
    )
    if not is_production:
        return f"instance type {instance_type or 'unset'} is not Production"
    if health_inclusion == OPT_OUT:
        return "opted out of health measures"
    return None


def subscription_active(
    *, status: str | None, start: date | None, end: date | None, first_day: date, last_day: date
) -> bool:
    """Whether a subscription is active at some point from ``first_day`` to ``last_day``.

    Its dates decide when they are known; one that is not active and has no end date ended on a
    day nobody recorded, so it counts as ended.
    """
    if start is not None and start > last_day:
        return False
    if end is not None:
        return end >= first_day
    return status in (None, "", ACTIVE)


def subscription_exclusion(
    candidate: InstanceCandidate, *, first_day: date, last_day: date
) -> str | None:
    """Why ``candidate``'s subscription keeps it out on those days, or None (methodology §1).

    Usage counts only while tied to an active subscription. An instance mapped to no
    subscription yet is not held back by this rule (its seats fall back to the ping's).
    """
    if candidate.subscription_id is None:
        return None
    start, end = candidate.subscription_start, candidate.subscription_end
    status = candidate.subscription_status
    if subscription_active(
        status=status, start=start, end=end, first_day=first_day, last_day=last_day
    ):
        return None
    name = (
        f"subscription {candidate.subscription_name}"
        if candidate.subscription_name
        else ("its subscription")
    )
    if start is not None and start > last_day:
        return f"{name} starts on {start.isoformat()}"
    if end is not None:
        return f"{name} ended on {end.isoformat()}"
    return f"{name} is {status}"


def _exclusion_reason(candidate: InstanceCandidate) -> str | None:
    return health_exclusion(
        instance_type=candidate.instance_type,
        health_inclusion=candidate.health_inclusion,
        is_saas=candidate.is_saas,
    )


def select_instances(
    candidates: Iterable[InstanceCandidate],
    *,
    as_of: date,
    scheme: Scheme,
    period_start: date | None = None,
) -> Selection:
    """Pick the instances whose latest pings feed the health measures (methodology §1).

    Eligible: applied type Production (SaaS namespaces count as Production), health inclusion
    not Opt-Out, and a subscription active on ``as_of`` (for a month of history: at some point
    from ``period_start`` to ``as_of``). An eligible instance contributes only if its latest
    ping is at most ``scheme.stale_ping_days`` old on ``as_of``. More than one eligible
    instance is warned about.
    """
    first_day = period_start or as_of
    labelled: list[InstanceCandidate] = []
    eligible: list[InstanceCandidate] = []
    excluded: list[tuple[int, str]] = []
    for candidate in candidates:
        reason = _exclusion_reason(candidate)
        if not reason:
            labelled.append(candidate)
            reason = subscription_exclusion(candidate, first_day=first_day, last_day=as_of)
        if reason:
            excluded.append((candidate.instance_id, reason))
        else:
            eligible.append(candidate)

    included: list[InstanceCandidate] = []
    stale: list[InstanceCandidate] = []
    warnings: list[str] = []
    if len(eligible) > 1:
        warnings.append(
            f"more than one instance in health measures ({len(eligible)}); "
            "the handbook's best practice is exactly one"
        )
    for candidate in eligible:
        if candidate.ping_id is None or candidate.recorded_at is None:
            excluded.append((candidate.instance_id, NO_PING))
            continue
        age = (as_of - _utc(candidate.recorded_at).date()).days
        if age > scheme.stale_ping_days:
            stale.append(candidate)
            warnings.append(
                f"{candidate.name}: latest ping is {age} days old "
                f"(limit {scheme.stale_ping_days}); left out"
            )
        else:
            included.append(candidate)

    na_reason = None
    if not labelled:
        na_reason = "no Production instance"
    elif not eligible:
        na_reason = "no Production instance on an active subscription"
    elif not included:
        na_reason = f"no data for {scheme.stale_ping_days} days" if stale else NO_PING
    return Selection(tuple(included), tuple(stale), tuple(excluded), tuple(warnings), na_reason)


# --------------------------------------------------------------------------- measures


def _missing_reason(metric: str, instance: InstanceCandidate) -> tuple[str, bool]:
    """Why ``metric`` is NULL on ``instance``, and whether that is known for sure.

    A failure value the instance sent, or a key its version does not send yet, explains the
    NULL; otherwise the metric was simply not reported.
    """
    info = METRICS[metric]
    if metric in instance.failed:
        return f"instance reported a failure value for {info.label}", True
    version = release(instance.version)
    if info.since and version and version < info.since:
        return f"{info.label} not available before {info.since[0]}.{info.since[1]}", True
    return f"{info.label} not reported", False


def _sum_metrics(
    metrics: tuple[str, ...], instances: Sequence[InstanceCandidate]
) -> tuple[float | None, str | None]:
    """Sum ``metrics`` over ``instances``; any NULL makes the total unknown (with a reason)."""
    total: float = 0
    fallback: str | None = None
    for instance in instances:
        values = instance.metrics
        for metric in metrics:
            value = values.get(metric)
            if value is None:
                reason, explained = _missing_reason(metric, instance)
                if explained:
                    return None, reason
                fallback = fallback or reason
            else:
                total += value
    return (None, fallback) if fallback else (total, None)


def _count_positive(
    metrics: tuple[str, ...], instances: Sequence[InstanceCandidate]
) -> tuple[int | None, list[str], str | None]:
    """How many of ``metrics`` total ≥ 1 over ``instances``, and which totals are unknown.

    An unknown total counts as not in use (the dbt model's rule), and is listed so that the
    explanation can name it; only when every total is unknown is the count unknown too.
    """
    count = 0
    unknown: list[str] = []
    first_reason: str | None = None
    for metric in metrics:
        total, reason = _sum_metrics((metric,), instances)
        if total is None:
            unknown.append(metric)
            first_reason = first_reason or reason
            continue
        count += total >= 1
    if len(unknown) == len(metrics):
        return None, unknown, first_reason
    return count, unknown, None


def _licensed_seats(instances: Sequence[InstanceCandidate]) -> tuple[float | None, str | None]:
    """Seats summed over distinct subscriptions, each falling back to its pings' licensed users.

    Instances without a subscription count on their own. Instances sharing a subscription
    share one seat count, so it is counted once.
    """
    seats: dict[object, float | None] = {}
    for instance in instances:
        key: object = (
            instance.subscription_id
            if instance.subscription_id is not None
            else ("instance", instance.instance_id)
        )
        value = instance.licensed_seats
        if value is None:
            value = instance.metrics.get("licensed_users")
        previous = seats.get(key)
        if previous is None or (value is not None and value > previous):
            seats[key] = value
    if None in seats.values():
        return None, f"{METRICS[LICENSED_SEATS].label} not reported"
    return sum(seats.values()), None


def _not_applicable(spec: MeasureSpec, instances: Sequence[InstanceCandidate]) -> str | None:
    """Why ``spec`` does not apply to these instances at all (plan, deployment, version)."""
    use_case = USE_CASE_LABELS[spec.use_case]
    if not spec.saas and any(i.is_saas for i in instances):
        return f"{use_case} is not measured for SaaS namespaces"
    if spec.plans is not None and not any((i.plan or "").lower() in spec.plans for i in instances):
        held = sorted({i.plan.title() for i in instances if i.plan})
        holder = f"{'/'.join(held)} subscription" if held else "no known subscription plan"
        required = " or ".join(sorted(p.title() for p in spec.plans))
        return f"{holder}: {use_case} applies to {required} only"
    if spec.min_version is not None:
        for instance in instances:
            version = release(instance.version)
            if version is not None and version < spec.min_version:
                return f"metric not available before {spec.min_version[0]}.{spec.min_version[1]}"
    return None


def _age_column(spec: MeasureSpec, age: int | None) -> AgeColumn | str:
    """The age column that colours ``spec`` at ``age`` months, or why there is none."""
    if age is None:
        return "customer-since date not set"
    column: AgeColumn | str = "too early to score"
    for candidate in spec.age_bands:
        if age >= candidate.min_age_months:
            column = candidate
    return column


def score_measure(
    spec: MeasureSpec,
    instances: Sequence[InstanceCandidate],
    *,
    scheme: Scheme,
    account_age: int | None = None,
    na_reason: str | None = None,
) -> MeasureResult:
    """Value and colour of one measure over the combined ``instances``.

    Numerators and denominators are summed across instances (licensed seats over distinct
    subscriptions). NULL anywhere, a zero denominator, an inapplicable plan/deployment/version
    or ``na_reason`` (from the selection) give NA with the reason. Age-banded measures need
    ``account_age`` in whole months.
    """
    inputs: dict[str, Any] = {
        "numerator": None,
        "denominator": None,
        "numerator_metrics": list(spec.numerator),
        "denominator_metrics": list(spec.denominator),
        "instance_ids": [i.instance_id for i in instances],
        "ping_ids": [i.ping_id for i in instances],
        "thresholds": spec.thresholds,
    }

    def result(color: Color, value: float | None, reason: str | None) -> MeasureResult:
        points = scheme.color_points[color] if color != NA else None
        return MeasureResult(
            spec.key, spec.label, spec.use_case, color, value, points, reason, inputs
        )

    reason = na_reason or (None if instances else "no Production instance")
    reason = reason or _not_applicable(spec, instances)
    if reason:
        return result(NA, None, reason)
    if spec.plans is not None:
        # Premium users never dilute an Ultimate-only measure: it is computed over the
        # instances on those plans alone (the dbt model weights Security by them only).
        on_plan = [i for i in instances if (i.plan or "").lower() in spec.plans]
        if len(on_plan) < len(instances):
            inputs["plan_only"] = sorted(spec.plans)
        instances = on_plan
        inputs["instance_ids"] = [i.instance_id for i in instances]
        inputs["ping_ids"] = [i.ping_id for i in instances]

    if spec.aggregate == "count_positive":
        numerator, unknown, reason = _count_positive(spec.numerator, instances)
        if unknown:
            inputs["unknown_metrics"] = unknown
    else:
        numerator, reason = _sum_metrics(spec.numerator, instances)
    inputs["numerator"] = numerator
    if reason:
        return result(NA, None, reason)

    if not spec.denominator:
        value: float = numerator
    else:
        if spec.denominator == (LICENSED_SEATS,):
            denominator, reason = _licensed_seats(instances)
            inputs["subscription_ids"] = sorted(
                {i.subscription_id for i in instances if i.subscription_id is not None}
            )
        else:
            denominator, reason = _sum_metrics(spec.denominator, instances)
        inputs["denominator"] = denominator
        if reason:
            return result(NA, None, reason)
        if not denominator:
            label = METRICS[spec.denominator[0]].label
            return result(NA, None, spec.zero_denominator_reason or f"no {label}")
        value = numerator / denominator

    band_list = spec.bands
    if spec.age_bands:
        inputs["account_age_months"] = account_age
        column = _age_column(spec, account_age)
        if isinstance(column, str):
            return result(NA, value, column)
        band_list = column.bands
        inputs["thresholds"] = f"{column.age_text}: {column.thresholds}"
    return result(classify(value, band_list), value, None)


# --------------------------------------------------------------------------- roll-ups


def _na_summary(results: Iterable[MeasureResult]) -> str | None:
    reasons = list(dict.fromkeys(r.reason for r in results if r.reason))
    return "; ".join(reasons) if reasons else None


def _roll_up_use_case(
    use_case: str, measures: Sequence[MeasureResult], scheme: Scheme
) -> MeasureResult:
    value, color = roll_up([m.points for m in measures], scheme)
    reason = _na_summary(measures) if color == NA else None
    inputs = {
        "measure_points": {m.key: m.points for m in measures},
        "thresholds": scheme.score_thresholds,
    }
    label = USE_CASE_LABELS[use_case]
    return MeasureResult(use_case, label, use_case, color, value, value, reason, inputs)


def _product_usage(
    component_scores: Mapping[str, float | None], scheme: Scheme, na_reason: str | None
) -> MeasureResult:
    value, weights_used = weighted_mean(component_scores, scheme.product_usage_weights)
    color = classify(value, scheme.score_bands) if value is not None else NA
    reason = None if value is not None else (na_reason or "no measure could be scored")
    inputs = {
        "component_points": dict(component_scores),
        "weights": dict(scheme.product_usage_weights),
        "weights_used": weights_used,
        "thresholds": scheme.score_thresholds,
    }
    label = "Overall product usage"
    return MeasureResult(
        "product_usage", label, "product_usage", color, value, value, reason, inputs
    )


def score_company(inputs: CompanyInputs, scheme: Scheme) -> Scorecard:
    """Score one company under ``scheme`` on ``inputs.as_of`` (methodology §1–§4)."""
    selection = select_instances(
        inputs.candidates, as_of=inputs.as_of, scheme=scheme, period_start=inputs.period_start
    )
    included = selection.included
    age = account_age(inputs.customer_since, inputs.as_of, scheme)
    # The handbook: every measure but sentiment is "usually NULL for the first 30 days".
    na_reason = selection.na_reason
    if age is not None and age < 1:
        na_reason = na_reason or TOO_EARLY

    measures = {
        spec.key: score_measure(spec, included, scheme=scheme, account_age=age, na_reason=na_reason)
        for spec in scheme.measures
    }
    by_use_case: dict[str, list[MeasureResult]] = {}
    for result in measures.values():
        by_use_case.setdefault(result.use_case, []).append(result)

    use_cases = {
        uc: _roll_up_use_case(uc, by_use_case.get(uc, ()), scheme) for uc in ADOPTION_USE_CASES
    }
    # A use case scores the mean of its measures' points (License Utilization and User
    # Engagement have one measure each), exactly as the adoption use cases above.
    component_scores = {
        uc: roll_up([m.points for m in by_use_case.get(uc, ())], scheme)[0]
        for uc in scheme.product_usage_weights
    }
    product_usage = _product_usage(component_scores, scheme, na_reason)
    sentiment = score_sentiment(
        inputs.sentiment,
        inputs.sentiment_date,
        as_of=inputs.as_of,
        scheme=scheme,
        csm_owned=inputs.csm_owned,
    )
    groups = {
        "outcomes": score_outcomes(inputs.roi, scheme=scheme, csm_owned=inputs.csm_owned),
        "voice_of_customer": score_voice(inputs.tickets, as_of=inputs.as_of, scheme=scheme),
        "engagement": score_engagement(
            inputs.meetings,
            prioritization=inputs.prioritization,
            as_of=inputs.as_of,
            scheme=scheme,
            csm_owned=inputs.csm_owned,
        ),
    }
    overall = overall_health(product_usage, sentiment, groups, scheme)

    colors = [uc.color for uc in use_cases.values()]
    adoption = None if all(c == NA for c in colors) else colors.count(GREEN)
    newest = max((_utc(i.recorded_at) for i in included if i.recorded_at), default=None)
    return Scorecard(
        scheme=scheme.label,
        as_of=newest.date() if newest else None,
        computed_for=inputs.as_of,
        measures=measures,
        use_cases=use_cases,
        product_usage=product_usage,
        csm_sentiment=sentiment,
        overall_health=overall,
        health_score_value=overall.value,
        adoption_count=adoption,
        instance_ids=tuple(i.instance_id for i in included),
        ping_ids=tuple(i.ping_id for i in included if i.ping_id is not None),
        warnings=selection.warnings,
        stale_instance_ids=tuple(i.instance_id for i in selection.stale),
        groups=groups,
    )


def included_totals(
    inputs: CompanyInputs, card: Scorecard, metrics: Sequence[str]
) -> dict[str, float | None]:
    """Each metric summed over the instances ``card`` scored; unknown anywhere → ``None``.

    Stored with each month's score, so trend and adoption pages read sums, not every instance.
    """
    included = set(card.instance_ids)
    rows = [c.metrics for c in inputs.candidates if c.instance_id in included]
    return {metric: sum_or_none(r.get(metric) for r in rows) for metric in metrics}
