"""The accounts' listing (``Company.listing_*``): added, filled in, then indexed.

Filled from each account's current snapshot and its instances as ``scoring.listing`` defines
them, written out here as it stands today (a migration must not follow later code). On
PostgreSQL in one ``UPDATE ... FROM`` over a ``GROUP BY`` (seconds for 50,000 accounts); on
other databases (SQLite: the demo, the unit suite) with a correlated subquery per field. The
indexes come after the rows are written: built once rather than maintained row by row.
"""

import accounts.models
from django.conf import settings
from django.db import migrations, models
from django.db.models import Case, Count, IntegerField, Max, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce

RANKS = ("Red", "Yellow", "Green")  # then NA, blank or no scorecard: 3
NA = 3
FIGURES = {
    "listing_license_utilization": "license_utilization",
    "listing_product_usage": "product_usage_value",
    "listing_licensed_seats": "licensed_seats",
    "listing_billable_users": "billable_users",
}
COLORS = {
    "listing_lu_rank": "license_utilization_color",
    "listing_ue_rank": "user_engagement_color",
    "listing_scm_rank": "scm_color",
    "listing_ci_rank": "ci_color",
    "listing_cd_rank": "cd_color",
    "listing_devsecops_rank": "devsecops_color",
    "listing_product_usage_rank": "product_usage_color",
    "listing_overall_rank": "overall_color",
}
COUNTS = {
    "listing_production": ("production",),
    "listing_non_production": ("non_production",),
    "listing_unknown": ("unknown",),
    "listing_other": ("obsolete", "geo_secondary"),
}


def _postgresql_sql() -> str:
    def rank(column):
        whens = " ".join(f"WHEN '{color}' THEN {n}" for n, color in enumerate(RANKS))
        return f"CASE s.{column} {whens} ELSE {NA} END"

    def types(names):
        return ", ".join(f"'{name}'" for name in names)

    sets = [f"{field} = s.{figure}" for field, figure in FIGURES.items()]
    sets += [f"{field} = {rank(color)}" for field, color in COLORS.items()]
    sets += [f"{field} = COALESCE(i.{field}, 0)" for field in COUNTS]
    sets.append("listing_last_ping_at = i.last_ping_at")
    counts = ", ".join(
        f"count(*) FILTER (WHERE instance_type IN ({types(names)})) AS {field}"
        for field, names in COUNTS.items()
    )
    # Every account is written: one without a snapshot or instances gets its NULLs, NA and 0s.
    return f"""
        UPDATE accounts_company c SET {", ".join(sets)}
        FROM accounts_company a
        LEFT JOIN scoring_scoresnapshot s ON s.company_id = a.id AND s.is_current
        LEFT JOIN (
            SELECT company_id, {counts}, max(last_ping_at) AS last_ping_at
            FROM instances_instance WHERE company_id IS NOT NULL GROUP BY company_id
        ) i ON i.company_id = a.id
        WHERE c.id = a.id
    """


def _portable(apps) -> dict:
    snapshots = apps.get_model("scoring", "ScoreSnapshot").objects
    instances = apps.get_model("instances", "Instance").objects
    current = snapshots.filter(company=OuterRef("pk"), is_current=True).order_by()
    per_company = instances.filter(company=OuterRef("pk")).order_by().values("company")
    values = {field: Subquery(current.values(figure)) for field, figure in FIGURES.items()}
    for field, color in COLORS.items():
        rank = Case(
            *(When(**{color: name}, then=Value(n)) for n, name in enumerate(RANKS)),
            default=Value(NA),
            output_field=IntegerField(),
        )
        values[field] = Coalesce(Subquery(current.annotate(r=rank).values("r")), Value(NA))
    for field, names in COUNTS.items():
        counted = per_company.filter(instance_type__in=names).annotate(n=Count("pk"))
        values[field] = Coalesce(Subquery(counted.values("n")), Value(0))
    values["listing_last_ping_at"] = Subquery(
        per_company.annotate(m=Max("last_ping_at")).values("m")
    )
    return values


def fill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_postgresql_sql())
        return
    apps.get_model("accounts", "Company").objects.update(**_portable(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_user_preferences"),
        ("instances", "0005_ping_received_index"),
        ("scoring", "0008_admin_jobs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="company",
            name="listing_billable_users",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_cd_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_ci_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_devsecops_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_last_ping_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_license_utilization",
            field=models.FloatField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_licensed_seats",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_lu_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_non_production",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_other",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_overall_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_product_usage",
            field=models.FloatField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_product_usage_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_production",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_scm_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_ue_rank",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddField(
            model_name="company",
            name="listing_unknown",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AlterField(
            model_name="company",
            name="name",
            field=models.CharField(max_length=255),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["name", "id"], name="company_by_name"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["segment", "name", "id"], name="company_by_segment"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["csm", "id"], name="company_by_csm"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_ue_rank", "name", "id"], name="company_by_ue"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_scm_rank", "name", "id"], name="company_by_scm"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_ci_rank", "name", "id"], name="company_by_ci"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_cd_rank", "name", "id"], name="company_by_cd"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(
                fields=["listing_devsecops_rank", "name", "id"], name="company_by_devsecops"
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(
                fields=["listing_overall_rank", "name", "id"], name="company_by_overall"
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_production", "id"], name="company_by_production"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(
                fields=["listing_non_production", "id"], name="company_by_non_production"
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_unknown", "id"], name="company_by_unknown"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_other", "id"], name="company_by_other"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_license_utilization", "id"], name="company_by_lu"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=accounts.models.DescNullsLastIndex(
                models.OrderBy(
                    models.F("listing_license_utilization"), descending=True, nulls_last=True
                ),
                models.F("id"),
                name="company_by_lu_desc",
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_product_usage", "id"], name="company_by_usage"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=accounts.models.DescNullsLastIndex(
                models.OrderBy(models.F("listing_product_usage"), descending=True, nulls_last=True),
                models.F("id"),
                name="company_by_usage_desc",
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_licensed_seats", "id"], name="company_by_seats"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=accounts.models.DescNullsLastIndex(
                models.OrderBy(
                    models.F("listing_licensed_seats"), descending=True, nulls_last=True
                ),
                models.F("id"),
                name="company_by_seats_desc",
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_billable_users", "id"], name="company_by_billable"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=accounts.models.DescNullsLastIndex(
                models.OrderBy(
                    models.F("listing_billable_users"), descending=True, nulls_last=True
                ),
                models.F("id"),
                name="company_by_billable_desc",
            ),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["listing_last_ping_at", "id"], name="company_by_last_ping"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=accounts.models.DescNullsLastIndex(
                models.OrderBy(models.F("listing_last_ping_at"), descending=True, nulls_last=True),
                models.F("id"),
                name="company_by_last_ping_desc",
            ),
        ),
    ]
