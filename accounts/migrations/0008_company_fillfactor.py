"""Room in every page of the account table for its own row's next version (PostgreSQL).

Every ping moves its account's ``updated_at`` (the data version of its cached pages), and the
table carries ~28 indexes for the dashboard's sort keys. ``updated_at`` is in none of them, so
an update that finds room on the row's own page is a heap-only tuple (HOT) update: no index is
touched. Packed pages (fillfactor 100) leave no room, and every touch rewrote all 28 indexes.
Rows written from now on leave 30 % of each page free; an existing table gets the room at its
next rewrite (``VACUUM FULL accounts_company``, docs/deploy.md).
"""

from django.db import migrations


def _fillfactor(percent):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        if percent is None:
            schema_editor.execute("ALTER TABLE accounts_company RESET (fillfactor)")
        else:
            schema_editor.execute(f"ALTER TABLE accounts_company SET (fillfactor = {percent})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_company_listing")]

    operations = [migrations.RunPython(_fillfactor(70), _fillfactor(None))]
