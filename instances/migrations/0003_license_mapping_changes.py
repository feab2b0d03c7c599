import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def mappings_so_far(apps, schema_editor):
    """One row per license mapped before the audit existed: the mapping it has now."""
    License = apps.get_model("instances", "License")
    Change = apps.get_model("instances", "LicenseMappingChange")
    mapped = License.objects.filter(subscription__isnull=False).exclude(mapped_via="")
    Change.objects.bulk_create(
        [
            Change(
                license_id=lic.pk,
                to_subscription_id=lic.subscription_id,
                to_name=lic.subscription.name,
                via=lic.mapped_via,
                changed_by_id=lic.mapped_by_id,
                changed_at=lic.mapped_at or lic.first_seen_at or django.utils.timezone.now(),
            )
            for lic in mapped.select_related("subscription").iterator()
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_outcomes_voice_engagement"),
        ("instances", "0002_unique_active_users_and_failed_metrics"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="labelchange",
            name="applied_via",
            field=models.CharField(
                blank=True,
                choices=[
                    ("apply_now", "applied now"),
                    ("schedule", "applied on schedule"),
                    ("sweep", "applied by the catch-up sweep"),
                    ("seed", "applied by the demo loader"),
                ],
                max_length=16,
            ),
        ),
        migrations.CreateModel(
            name="LicenseMappingChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "from_name",
                    models.CharField(blank=True, max_length=64, verbose_name="from subscription"),
                ),
                (
                    "to_name",
                    models.CharField(blank=True, max_length=64, verbose_name="to subscription"),
                ),
                (
                    "via",
                    models.CharField(
                        choices=[
                            ("ping", "From the ping's subscription id"),
                            ("manual", "By hand"),
                            ("import", "By import"),
                        ],
                        max_length=8,
                    ),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "changed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "from_subscription",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="accounts.subscription",
                    ),
                ),
                (
                    "license",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="mapping_changes",
                        to="instances.license",
                    ),
                ),
                (
                    "to_subscription",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="accounts.subscription",
                    ),
                ),
            ],
            options={
                "ordering": ["-changed_at", "-pk"],
                "indexes": [
                    models.Index(
                        fields=["license", "-changed_at"], name="instances_l_license_d40dfb_idx"
                    ),
                    models.Index(fields=["-changed_at"], name="license_mapping_change_recent"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("via__in", ["ping", "manual", "import"])),
                        name="license_mapping_change_via_valid",
                    )
                ],
            },
        ),
        migrations.RunPython(mappings_so_far, migrations.RunPython.noop),
    ]
