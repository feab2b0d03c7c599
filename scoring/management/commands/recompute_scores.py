import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Company
from scoring.services import (
    active_scheme,
    companies_recompute_all,
    companies_refresh,
    recompute_progress,
    scheme_version_sync,
)
from scoring.tasks import recompute_fan_out

#: How often ``--fan-out`` looks at the run's completion (one indexed read a time).
POLL_SECONDS = 0.2


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
        parser.add_argument(
            "--fan-out",
            action="store_true",
            help="with --all: queue one task per chunk of companies for the workers (the "
            "'recompute' queue) and wait until every chunk is done, instead of computing here",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            metavar="SECONDS",
            help="with --fan-out: give up waiting after this long (default 3600); the queued "
            "chunks still run",
        )

    def handle(
        self, *args, company=None, all=False, history=False, fan_out=False, timeout=3600.0, **_
    ):
        if fan_out and not all:
            raise CommandError("--fan-out goes with --all")
        started = time.monotonic()
        scheme = active_scheme()
        if all:
            # Scores of an older rule version: recorded as a scheme change, history rebuilt.
            if scheme_version_sync() is not None:
                count = Company.objects.count()
            elif fan_out:
                count = self._fan_out(history=history, timeout=timeout, started=started)
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

    def _fan_out(self, *, history: bool, timeout: float, started: float) -> int:
        """Publish the chunks and wait for the run's last one: the workers do the work."""
        run = recompute_fan_out(reason="recompute_scores --all --fan-out", history=history)
        self.stderr.write(f"Queued {run.chunks} chunk tasks for {run.companies} companies.")
        while True:
            done, chunks, finished = recompute_progress(run.pk)
            if finished:
                return run.companies
            if time.monotonic() - started > timeout:
                raise CommandError(
                    f"gave up after {timeout:.0f}s: {done} of {chunks} chunks done (is a worker "
                    "consuming the 'recompute' queue?); the rest stay queued"
                )
            time.sleep(POLL_SECONDS)
