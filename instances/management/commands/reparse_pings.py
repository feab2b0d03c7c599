"""``manage.py reparse_pings [--metrics a,b]``: stored raw payloads read with today's parser."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from instances.services.reparse import pings_reparse


class Command(BaseCommand):
    help = (
        "Read every kept raw payload again with this release's parser and update the pings' "
        "metric columns and failure values (and their monthly rows), then rescore the accounts "
        "it changed, history included. Run once after an upgrade that adds a metric (e.g. "
        "unique active users). Pings whose raw payload was purged keep their values. Exit "
        "status: 0, or 1 when some payload could not be read (listed on stderr)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--metrics", default="", help="comma-separated metric names (default: all)"
        )

    def handle(self, *args, metrics="", **options):
        names = tuple(m.strip() for m in metrics.split(",") if m.strip())
        try:
            summary = pings_reparse(**({"metrics": names} if names else {}))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for ping_id, reason in summary.unreadable:
            self.stderr.write(f"ping {ping_id}: {reason}")
        self.stdout.write(
            f"{summary.pings} stored payload(s) read, {summary.changed} ping(s) updated, "
            f"{len(summary.company_ids)} account(s) to rescore."
        )
        if summary.unreadable:
            raise CommandError(f"{len(summary.unreadable)} payload(s) could not be read")
