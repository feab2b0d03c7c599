"""Create the demo book of business through the real import and ingest paths. Safe to re-run.

A book seeded before keeps the day its pings end on, however much later it is run again; start
from an empty database for a book that ends yesterday.

The work is ``usage_portal.sampledata.seed.demo_book_seed``; this command reads its options and
the login password (``DEMO_PASSWORD``, default "demo") and prints what it did.
"""

import os
import time

from django.core.management.base import BaseCommand

from usage_portal.sampledata.seed import demo_book_seed


class Command(BaseCommand):
    help = "Load a realistic demo book of business (48 accounts, two years of weekly pings)."

    def add_arguments(self, parser):
        parser.add_argument("--companies", type=int, default=48)
        parser.add_argument("--weeks", type=int, default=104)

    def handle(self, *args, companies: int, weeks: int, **options):
        started = time.monotonic()
        done = demo_book_seed(
            companies=companies,
            weeks=weeks,
            password=os.environ.get("DEMO_PASSWORD", "demo"),
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready in {time.monotonic() - started:.1f}s: {done.companies} "
                f"companies, {done.instances} instances/namespaces, {done.stored} new pings "
                f"({done.duplicates} already present), {done.scored} scorecards; "
                f"newest pings dated {done.end:%-d %b %Y}."
            )
        )
        self.stdout.write(
            "Logins (password from DEMO_PASSWORD, default 'demo'): " + ", ".join(done.usernames)
        )
