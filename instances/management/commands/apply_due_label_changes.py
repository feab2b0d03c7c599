from django.core.management.base import BaseCommand

from instances.labels import label_changes_apply_due


class Command(BaseCommand):
    help = "Apply every pending label change whose effective time has passed (the beat sweep)."

    def handle(self, *args, **options):
        applied = label_changes_apply_due()
        self.stdout.write(self.style.SUCCESS(f"Applied {applied} due label change(s)."))
