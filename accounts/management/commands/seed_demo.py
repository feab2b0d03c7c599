"""Create the demo book of business through the real import and ingest paths. Safe to re-run."""

import os
import time

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.importers import CompanyRow, LicenseMappingRow, SubscriptionRow
from accounts.models import Company
from accounts.services import companies_import, license_mappings_import, subscriptions_import
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance, InstanceKind, LabelChange, PingSource
from instances.parsing import parse_ping
from instances.saas import parse_saas_row
from instances.services.inputs import PingInput
from instances.services.store import pings_store
from scoring.services import companies_recompute_all
from usage_portal.sampledata.demo import build_book, iter_ping_kwargs, iter_saas_rows
from usage_portal.sampledata.payloads import build_payload

DEMO_USERS = (
    # username, full name, role, is_staff
    ("ops", "Olivia Ops", "Ops", True),
    ("csm1", "Casey Morgan", "CSM", False),
    ("csm2", "Sam Rivera", "CSM", False),
    ("csm3", "Jordan Lee", "CSM", False),
    ("viewer", "Vic Sales", "Viewer", False),
)
BATCH = 500


class Command(BaseCommand):
    help = "Load a realistic demo book of business (48 accounts, two years of weekly pings)."

    def add_arguments(self, parser):
        parser.add_argument("--companies", type=int, default=48)
        parser.add_argument("--weeks", type=int, default=104)

    def handle(self, *args, companies: int, weeks: int, **options):
        started = time.monotonic()
        password = os.environ.get("DEMO_PASSWORD", "demo")
        users = self._users(password)
        book = build_book(companies=companies, weeks=weeks, csms=("csm1", "csm2", "csm3"))

        companies_import(
            rows=[
                CompanyRow(n, c.crm_account_id, c.name, c.segment, c.csm, c.customer_since)
                for n, c in enumerate(book.companies, start=2)
            ]
        )
        subscriptions_import(
            rows=[
                SubscriptionRow(
                    n,
                    s.name,
                    s.crm_account_id,
                    s.plan,
                    s.licensed_seats,
                    s.start_date,
                    s.end_date,
                    "active",
                    s.deployment,
                    s.arr,
                )
                for n, s in enumerate(book.subscriptions, start=2)
            ]
        )
        # Instances that send no subscription id are mapped the way GitLab does it: md5 → sub.
        license_mappings_import(
            rows=[
                LicenseMappingRow(n, spec.license_md5, spec.subscription.name)
                for n, spec in enumerate(book.instances, start=2)
                if spec.kind == "self-managed"
                and not spec.sends_subscription_id
                and not spec.unmapped
                and spec.license_md5
            ]
        )

        stored = duplicates = 0
        batch: list[PingInput] = []

        def flush(source):
            nonlocal stored, duplicates, batch
            if batch:
                summary = pings_store(inputs=batch, source=source, refresh=False)
                stored += summary.accepted
                duplicates += summary.duplicates
                batch = []

        for spec in book.instances:
            if spec.kind != "self-managed":
                continue
            for kwargs in iter_ping_kwargs(book, spec):
                raw = orjson.dumps(build_payload(**kwargs))
                batch.append(PingInput.from_parsed(parse_ping(orjson.loads(raw)), raw=raw))
                if len(batch) >= BATCH:
                    flush(PingSource.BULK)
        flush(PingSource.BULK)
        for spec in book.instances:
            if spec.kind == "saas":
                for line, row in enumerate(iter_saas_rows(book, spec), start=2):
                    batch.append(PingInput.from_saas(parse_saas_row(row, line=line)))
        flush(PingSource.SAAS)

        self._labels(book, users)
        self._sentiment(book, users)

        scored = companies_recompute_all(reason="seed_demo")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready in {time.monotonic() - started:.1f}s: {len(book.companies)} "
                f"companies, {len(book.instances)} instances/namespaces, {stored} new pings "
                f"({duplicates} already present), {scored} scorecards."
            )
        )
        self.stdout.write(
            "Logins (password from DEMO_PASSWORD, default 'demo'): "
            + ", ".join(u[0] for u in DEMO_USERS)
        )

    def _users(self, password: str) -> dict:
        User = get_user_model()
        users = {}
        for username, full_name, role, staff in DEMO_USERS:
            first, last = full_name.split(" ", 1)
            user, _ = User.objects.update_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "is_staff": staff,
                    "email": f"{username}@example.com",
                },
            )
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            users[username] = user
        return users

    @transaction.atomic
    def _labels(self, book, users) -> None:
        """Labels people gave before today, applied; plus one edit still pending."""
        instances = {
            (i.uuid, i.hostname) if i.kind == InstanceKind.SELF_MANAGED else i.namespace_id: i
            for i in Instance.objects.all()
        }
        labeled = set(LabelChange.objects.values_list("instance_id", "field"))
        for spec in book.instances:
            key = (spec.uuid, spec.hostname) if spec.kind == "self-managed" else spec.namespace_id
            inst = instances.get(key)
            if inst is None:
                continue
            by = users.get(spec.company.csm) or users["ops"]
            wanted = []
            if spec.label and spec.kind == "self-managed":
                wanted.append(("instance_type", spec.label))
            if spec.opt_out:
                wanted.append(("health_inclusion", "opt_out"))
            for field, value in wanted:
                if (inst.id, field) in labeled:
                    continue  # re-running never relabels what is already labeled
                change = label_change_request(
                    instance=inst, field=field, value=value, by=by, schedule=False
                )
                if change is not None and change.is_pending:
                    label_change_apply(change_id=change.id, via="seed", force=True, refresh=False)
        # One Unknown instance with an edit waiting for the refresh delay.
        unknown = (
            Instance.objects.unknown()
            .filter(company__csm__username="csm1")
            .exclude(label_changes__isnull=False)
            .order_by("id")
            .first()
        )
        if unknown is not None:
            label_change_request(
                instance=unknown,
                field="instance_type",
                value="non_production",
                by=users["csm1"],
            )

    def _sentiment(self, book, users) -> None:
        from django.utils import timezone

        for spec in book.companies:
            if not spec.sentiment:
                continue
            Company.objects.filter(crm_account_id=spec.crm_account_id, sentiment="").update(
                sentiment=spec.sentiment,
                sentiment_note=spec.sentiment_note,
                sentiment_by=users.get(spec.csm),
                sentiment_at=timezone.now(),
            )
