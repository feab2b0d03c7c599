from django.core.management.base import BaseCommand, CommandError

from scoring.schemes import PRESETS
from scoring.services import scheme_set


class Command(BaseCommand):
    help = "Switch the active scoring scheme and recompute scores (and history) under it."

    def add_arguments(self, parser):
        parser.add_argument("scheme", choices=sorted(PRESETS))
        parser.add_argument(
            "--keep-history",
            action="store_true",
            help="do not rebuild monthly history under the new scheme",
        )

    def handle(self, *args, scheme, keep_history=False, **options):
        try:
            change = scheme_set(name=scheme, rebuild_history=not keep_history)
        except KeyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Scheme changed: {change}"))
