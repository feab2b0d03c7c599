from django.core.management.base import BaseCommand

from scoring.exports import instance_types_export_write


class Command(BaseCommand):
    help = "Write today's instance-type export (the weekly Snowflake sync file) under EXPORT_DIR."

    def handle(self, *args, **options):
        path = instance_types_export_write()
        self.stdout.write(self.style.SUCCESS(f"Wrote {path}"))
