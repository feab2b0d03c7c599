"""Data out: the weekly instance-type export and the Salesforce-style health fields."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from instances.models import Instance

from .models import ScoreSnapshot
from .scorecard import Scorecard, api_health_payload
from .spreadsheet import safe_cell

INSTANCE_TYPE_COLUMNS = (
    "uuid",
    "hostname",
    "namespace_id",
    "crm_account_id",
    "instance_type",
    "included_in_health_measures",
    "updated_at",
)
HEALTH_COLUMNS = (
    ("crm_account_id", "Account ID"),
    ("name", "Account Name"),
    ("license_utilization", "[GS] Health: License Utilization"),
    ("scm", "[GS] Health: SCM"),
    ("ci", "[GS] Health: CI"),
    ("cd", "[GS] Health: CD"),
    ("devsecops", "[GS] Health: DevSecOps"),
    ("user_engagement", "[GS] Health: User Engagement"),
    ("overall_product_usage", "[GS] Health: Overall Product Usage"),
    ("csm_sentiment", "[GS] CSM Sentiment"),
    ("overall_health", "[GS] Health: Overall"),
    ("health_score_value", "[GS] Health Score Value"),
    ("adoption_count", "[GS] Use Case Adoption Count"),
    ("as_of", "Data as of"),
)


def instance_type_rows():
    inclusion = {"": "Automatic", "included": "Included", "opt_out": "Opt-Out"}
    qs = (
        Instance.objects.select_related("company")
        .annotate(
            labeled_at=Max("label_changes__applied_at", filter=Q(label_changes__status="applied"))
        )
        .order_by("id")
    )
    for inst in qs.iterator(chunk_size=2000):
        yield (
            inst.uuid or "",
            inst.hostname,
            inst.namespace_id or "",
            inst.company.crm_account_id if inst.company_id else "",
            inst.get_instance_type_display(),
            inclusion.get(inst.health_inclusion, inst.health_inclusion),
            (inst.labeled_at or inst.created_at).isoformat(),
        )


def write_csv(rows, header, stream) -> None:
    writer = csv.writer(stream)
    writer.writerow(header)
    writer.writerows([safe_cell(v) for v in row] for row in rows)


def instance_types_export_write(*, on: date | None = None) -> Path:
    """Write ``instance_types_<date>.csv`` under ``EXPORT_DIR`` (atomically) and return its path."""
    on = on or timezone.now().date()
    directory = Path(settings.EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"instance_types_{on.isoformat()}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        write_csv(instance_type_rows(), INSTANCE_TYPE_COLUMNS, fh)
    tmp.replace(path)
    return path


def latest_instance_type_export() -> Path | None:
    files = sorted(Path(settings.EXPORT_DIR).glob("instance_types_*.csv"))
    return files[-1] if files else None


def health_payload(snapshot: ScoreSnapshot) -> dict:
    return api_health_payload(
        Scorecard.from_dict(snapshot.detail), crm_account_id=snapshot.company.crm_account_id
    )


def health_csv() -> str:
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow([label for _, label in HEALTH_COLUMNS])
    snaps = (
        ScoreSnapshot.objects.filter(is_current=True)
        .select_related("company")
        .order_by("company__name")
    )
    for snap in snaps.iterator(chunk_size=1000):
        payload = health_payload(snap)
        row = []
        for key, _ in HEALTH_COLUMNS:
            if key == "crm_account_id":
                row.append(snap.company.crm_account_id)
            elif key == "name":
                row.append(snap.company.name)
            elif key in payload["measures"]:
                row.append(payload["measures"][key]["color"])
            else:
                row.append("" if payload.get(key) is None else payload[key])
        writer.writerow([safe_cell(v) for v in row])
    return stream.getvalue()
