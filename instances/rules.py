"""Labeling automation for accounts without a CSM (product.md §7), as data plus one pure function.

Each rule proposes Production for an Unknown instance; proposals go through the ordinary label
change path (pending, refresh delay, audit trail) with the rule's name as author, and never touch
an instance a person has labeled or has an edit pending for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from accounts.models import csm_owned_q
from instances.labels import label_change_request
from instances.models import Instance, LabelChange, UsagePing

UTILIZATION_RULE = "Set Instance Type - Programmatically by License Utilization"
SINGLE_INSTANCE_RULE = "Set Instance Type - Programmatically by Instance Count = 1"
SAAS_RULE = "Label SaaS Instances as Production"
UTILIZATION_THRESHOLD = 0.20  # license or UMAU utilization at or above this → Production


@dataclass(frozen=True, slots=True)
class RuleInstance:
    instance_id: int
    is_saas: bool
    instance_type: str
    subscription_id: int | None
    licensed_seats: int | None
    billable_users: int | None
    umau: int | None


def rule_decisions(instances: Iterable[RuleInstance]) -> list[tuple[int, str]]:
    """(instance id, rule name) for every Unknown instance a rule would label Production."""
    instances = list(instances)
    per_subscription = Counter(i.subscription_id for i in instances if i.subscription_id)
    decisions = []
    for inst in instances:
        if inst.instance_type != "unknown":
            continue
        if inst.is_saas:
            decisions.append((inst.instance_id, SAAS_RULE))
        elif _utilization(inst) >= UTILIZATION_THRESHOLD:
            decisions.append((inst.instance_id, UTILIZATION_RULE))
        elif inst.subscription_id and per_subscription[inst.subscription_id] == 1:
            decisions.append((inst.instance_id, SINGLE_INSTANCE_RULE))
    return decisions


def _utilization(inst: RuleInstance) -> float:
    if not inst.licensed_seats:
        return 0.0
    best = max(inst.billable_users or 0, inst.umau or 0)
    return best / inst.licensed_seats


def labeling_rules_run() -> list[tuple[int, str]]:
    """Apply the rules to accounts without a CSM; returns the (instance, rule) edits requested."""
    not_csm_owned = ~csm_owned_q("company__")
    person_touched = LabelChange.objects.filter(
        instance=OuterRef("pk"), field="instance_type"
    ).filter(Q(requested_by__isnull=False) | Q(status="pending"))
    candidates = (
        Instance.objects.filter(not_csm_owned, company__isnull=False)
        .annotate(touched=Exists(person_touched))
        .values(
            "id",
            "kind",
            "instance_type",
            "subscription_id",
            "subscription__licensed_seats",
            "labeled_by_person",
            "touched",
            "last_ping_at",
        )
    )
    rows = list(candidates)
    latest = UsagePing.objects.latest_of(
        (r["id"] for r in rows if r["instance_type"] == "unknown" and r["last_ping_at"]),
        "recorded_at",
        "billable_users",
        "umau",
    )
    subjects = [
        RuleInstance(
            instance_id=r["id"],
            is_saas=r["kind"] == "saas",
            # An instance a person labeled, or with any pending edit, is not the rules' to touch.
            instance_type="person"
            if r["labeled_by_person"] or r["touched"]
            else r["instance_type"],
            subscription_id=r["subscription_id"],
            licensed_seats=r["subscription__licensed_seats"],
            billable_users=_ping_value(latest, r, "billable_users"),
            umau=_ping_value(latest, r, "umau"),
        )
        for r in rows
    ]
    decisions = rule_decisions(subjects)
    instances = Instance.objects.in_bulk([i for i, _ in decisions])
    requested = []
    for instance_id, rule in decisions:
        change = label_change_request(
            instance=instances[instance_id],
            field="instance_type",
            value="production",
            author=f"rule: {rule}",
            defer_to_person=True,
        )
        if change is not None:
            requested.append((instance_id, rule))
    return requested


def _ping_value(latest: dict, row: dict, name: str):
    ping = latest.get(row["id"])
    if ping is None or ping["recorded_at"] != row["last_ping_at"]:
        return None
    return ping[name]
