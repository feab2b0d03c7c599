from django.core.management.base import BaseCommand

from instances.rules import labeling_rules_run


class Command(BaseCommand):
    help = "Run the labeling rules for accounts without a CSM (Scale and Digital)."

    def handle(self, *args, **options):
        decisions = labeling_rules_run()
        for instance_id, rule in decisions:
            self.stdout.write(f"instance {instance_id} → Production ({rule})")
        self.stdout.write(self.style.SUCCESS(f"{len(decisions)} label change(s) requested."))
