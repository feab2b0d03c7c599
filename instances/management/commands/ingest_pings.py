"""``manage.py ingest_pings PATH...``: bulk-load Service Ping payload files."""

from __future__ import annotations

import os
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.changes import companies_changed
from instances.services.files import ping_files_find, ping_files_ingest
from instances.services.rejections import rejected_payloads_keep


class Command(BaseCommand):
    help = (
        "Load Service Ping payloads from files and folders (folders are searched recursively "
        "for .json and .json.gz). The same ping loaded twice is stored once. Prints accepted, "
        "duplicates, unmapped and rejected counts; each rejected file is listed on stderr as "
        "'PATH: reason' and kept for ops. Exit status: 0 when no file was rejected, 1 when some "
        "were (the others are stored)."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="payload files or folders")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="files stored per transaction (default 500)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="processes reading, parsing and compressing files while batches are stored "
            "(default: CPUs, at most 4)",
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar (it is also off when stderr is not a terminal)",
        )

    def handle(self, *args, paths, batch_size, workers, no_progress, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1", returncode=2)
        started = time.monotonic()
        files, missing = ping_files_find(paths)
        if missing:
            rejected_payloads_keep(
                source="bulk", rejections=[(p[-255:], r, None) for p, r in missing]
            )
        show = not no_progress and sys.stderr.isatty()
        with tqdm(
            total=len(files), unit="file", file=sys.stderr, disable=not show, smoothing=0.1
        ) as bar:
            summary = ping_files_ingest(
                files=files,
                batch_size=batch_size,
                workers=workers,
                max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES,
                on_progress=bar.update,
            )
        companies_changed(summary.company_ids, reason="bulk load")
        elapsed = time.monotonic() - started

        rejected = missing + summary.rejected
        for path, reason in rejected:
            self.stderr.write(f"{path}: {reason}")
        rate = summary.items / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"{summary.items} file(s) in {elapsed:.1f}s ({rate:.0f} files/s): "
            f"{summary.accepted} accepted, {summary.duplicates} duplicates, "
            f"{summary.unmapped} unmapped, {len(rejected)} rejected"
        )
        if summary.company_ids:
            self.stdout.write(
                f"Score refresh queued for {len(summary.company_ids)} compan"
                f"{'y' if len(summary.company_ids) == 1 else 'ies'}."
            )
        if rejected:
            raise CommandError(
                f"{len(rejected)} file(s) rejected, listed above; the others were stored",
                returncode=1,
            )
