import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Company
from scoring.services import (
    active_scheme,
    companies_recompute_all,
    companies_refresh,
    scheme_version_sync,
)


class Command(BaseCommand):
    help = "Recompute health scores for one company (--company ID) or every company (--all)."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--company", type=int, action="append", metavar="ID", help="company id (repeatable)"
        )
        target.add_argument("--all", action="store_true", help="every company")
        parser.add_argument(
            "--history", action="store_true", help="also rebuild the monthly score history"
        )

    def handle(self, *args, company=None, all=False, history=False, **options):
        started = time.monotonic()
        scheme = active_scheme()
        if all:
            # Scores of an older rule version: recorded as a scheme change, history rebuilt.
            if scheme_version_sync() is not None:
                count = Company.objects.count()
            else:
                count = companies_recompute_all(reason="recompute_scores --all", history=history)
        else:
            found = set(Company.objects.filter(id__in=company).values_list("id", flat=True))
            missing = sorted(set(company) - found)
            if missing:
                raise CommandError(f"no company with id {', '.join(map(str, missing))}")
            companies_refresh(company_ids=sorted(found), reason="recompute_scores", history=history)
            count = len(found)
        seconds = time.monotonic() - started
        rate = count / seconds if seconds else float("inf")
        self.stdout.write(
            self.style.SUCCESS(
                f"Recomputed {count} companies under {scheme.label} in {seconds:.2f}s "
                f"({rate:.0f} companies/s)."
            )
        )
