"""``manage.py ingest_saas PATH...``: load weekly SaaS namespace exports (CSV or JSON)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.changes import companies_changed
from instances.parsing import PingRejected
from instances.services.files import saas_export_ingest
from instances.services.rejections import rejected_payloads_keep


class Command(BaseCommand):
    help = (
        "Load weekly SaaS namespace exports: CSV with a header row, a JSON array of objects, or "
        "JSON Lines. Columns: namespace_id, namespace_path, subscription_name, snapshot_date, "
        "seats, seats_in_use and the usage metrics by name (see the metrics dictionary). "
        "Namespaces are Production on arrival; the same namespace and snapshot date is stored "
        "once. Each bad row is listed on stderr as 'PATH:line N: reason' and kept for ops. "
        "Exit status: 0 when nothing was rejected, 1 when some rows or files were."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="export files")

    def handle(self, *args, paths, **options):
        rejected = 0
        company_ids: set[int] = set()
        for name in paths:
            path = Path(name)
            try:
                summary = saas_export_ingest(data=path.read_bytes(), filename=str(path))
            except (OSError, PingRejected) as exc:
                reason = getattr(exc, "reason", None) or f"cannot read the file: {exc.strerror}"
                rejected_payloads_keep(source="saas", rejections=[(name[-255:], reason, None)])
                self.stderr.write(f"{path}: {reason}")
                rejected += 1
                continue
            for location, reason in summary.rejected:
                self.stderr.write(f"{path}:{location}: {reason}")
            rejected += len(summary.rejected)
            company_ids |= summary.company_ids
            self.stdout.write(
                f"{path}: {summary.items} row(s): {summary.accepted} accepted, "
                f"{summary.duplicates} duplicates, {summary.unmapped} unmapped, "
                f"{len(summary.rejected)} rejected"
            )
        companies_changed(company_ids, reason="SaaS export")
        if rejected:
            raise CommandError(
                f"{rejected} row(s) or file(s) rejected, listed above; the rest was stored",
                returncode=1,
            )
