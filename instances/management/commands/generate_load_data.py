"""Generate a large, realistic book of business for benchmarks, at COPY speed.

The work is ``usage_portal.sampledata.bulk_load.load_book_generate`` (layout from
``usage_portal.sampledata.loadgen``: the demo's shape and variety at scale); this command reads
its options and the login password (``DEMO_PASSWORD``, default "demo") and prints each phase with
its timing as it goes (``bench/dataset.py`` reads the "<phase>: <seconds>s" lines back).
"""

from __future__ import annotations

import os
import time
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from usage_portal.sampledata.bulk_load import LoadRefused, load_book_generate

#: The options that lay the book out (``build_load_book``'s arguments).
LAYOUT_OPTIONS = ("companies", "weeks", "namespaces", "csms", "end", "seed")


class Command(BaseCommand):
    help = (
        "Generate a large benchmark book (default 5,000 companies, ~3 self-managed instances each "
        "plus 2,000 SaaS namespaces, 104 weekly pings each) with COPY-speed inserts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--companies", type=int, default=5000)
        parser.add_argument("--weeks", type=int, default=104)
        parser.add_argument(
            "--namespaces",
            type=int,
            default=None,
            help="SaaS namespaces (default: 40%% of companies)",
        )
        parser.add_argument("--csms", type=int, default=25, help="CSM users csm1..csmN")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--end", type=date.fromisoformat, default=None, help="date of the newest ping"
        )
        parser.add_argument(
            "--reset", action="store_true", help="replace whatever the database holds"
        )
        parser.add_argument(
            "--history", action="store_true", help="also build the monthly score history"
        )
        parser.add_argument("--no-scores", action="store_true", help="skip the score recompute")

    def handle(self, *args, **opts):
        started = time.perf_counter()
        if opts["companies"] < 1 or opts["weeks"] < 1:
            raise CommandError("--companies and --weeks must be at least 1")
        try:
            done = load_book_generate(
                layout={name: opts[name] for name in LAYOUT_OPTIONS},
                password=os.environ.get("DEMO_PASSWORD", "demo"),
                reset=opts["reset"],
                scores=not opts["no_scores"],
                history=opts["history"],
                report=self.note,
            )
        except LoadRefused as refused:
            raise CommandError(str(refused)) from refused
        total = time.perf_counter() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Load data ready in {total:.1f}s: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in done.timings.items())
            )
        )
        self.note(
            "Logins (password from DEMO_PASSWORD, default 'demo'): ops, "
            f"csm1..csm{len(done.book.csms)}, viewer"
        )

    def note(self, text: str) -> None:
        self.stdout.write(f"  {text}")
        self.stdout.flush()
