"""``manage.py import_crm PATH...``: companies, subscriptions and license mappings from CSV."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.importers import IMPORT_ORDER, ImportError_, read_csv
from accounts.services import (
    companies_import,
    license_mappings_import,
    meetings_import,
    subscriptions_import,
    success_plans_import,
    support_tickets_import,
)

IMPORTERS = {
    "companies": companies_import,
    "subscriptions": subscriptions_import,
    "license_mappings": license_mappings_import,
    "success_plans": success_plans_import,
    "support_tickets": support_tickets_import,
    "meetings": meetings_import,
}


class Command(BaseCommand):
    help = (
        "Import CRM reference data from CSV files, each recognised by its header row: companies "
        "(crm_account_id, name, segment, csm, customer_since), subscriptions (subscription_name, "
        "crm_account_id, plan, licensed_seats, start_date, end_date, status, deployment, "
        "optional arr), GitLab's license mapping file (license_md5, zuora_subscription_id), "
        "success plans (crm_account_id, roi, optional note), support tickets (crm_account_id, "
        "month, tickets) and meetings (crm_account_id, date, personas separated by ';'). "
        "Companies may carry an optional prioritization column (1 or 2 set a meeting cadence). "
        "UTF-8 with or "
        "without BOM; extra columns are ignored. Files are imported companies first, then "
        "subscriptions, then mappings, whatever their order here. Re-importing updates rows, "
        "never duplicates them: an optional column left blank keeps the stored value, a lone "
        "'-' clears it, and every value changed is listed as 'PATH:line N: key: field old → "
        "new'. Dates are written YYYY-MM-DD. A mapping attaches the pings that waited for it. "
        "Problems are listed on stderr as 'PATH:line N: problem'. Exit status: 0 when every "
        "row was "
        "imported, 1 when some rows or files were not."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV files")

    def handle(self, *args, paths, **options):
        failures = 0
        files = []
        for name in paths:
            try:
                kind, rows, errors = read_csv(Path(name).read_bytes())
            except OSError as exc:
                self.stderr.write(f"{name}: cannot read the file: {exc.strerror}")
                failures += 1
                continue
            except ImportError_ as exc:
                self.stderr.write(f"{name}: {exc}")
                failures += 1
                continue
            files.append((IMPORT_ORDER.index(kind), name, kind, rows, errors))

        for _, name, kind, rows, errors in sorted(files, key=lambda f: f[0]):
            summary = IMPORTERS[kind](rows=rows)
            problems = sorted(errors + summary.errors, key=_line_number)
            for problem in problems:
                self.stderr.write(f"{name}:{problem}")
            for note in summary.notes:
                self.stdout.write(f"{name}:{note}")
            failures += len(problems)
            line = (
                f"{name}: {kind.replace('_', ' ')}: {summary.created} created, "
                f"{summary.updated} updated, {summary.unchanged} unchanged, "
                f"{len(problems)} with errors"
            )
            if summary.attached_pings:
                line += f"; {summary.attached_pings} waiting ping(s) attached"
            self.stdout.write(line)
        if failures:
            raise CommandError(
                f"{failures} row(s) or file(s) not imported, listed above", returncode=1
            )


def _line_number(problem: str) -> int:
    # "line 12: ..." → 12, so parse and database problems interleave in file order.
    number = problem.removeprefix("line ").split(":", 1)[0]
    return int(number) if number.isdigit() else 0
