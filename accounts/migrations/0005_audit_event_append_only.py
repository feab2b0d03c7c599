"""On PostgreSQL, the database itself refuses to change or remove an audit event.

The model and its queryset refuse too, but raw SQL, a shell or another client would not meet
them. TRUNCATE is left alone: it needs the table's owner (or the TRUNCATE privilege, which a
deployment can withhold from the app's role), and the test runner flushes tables with it.
Other databases (SQLite for the demo and the unit suite) rely on the model alone.
"""

from django.db import migrations

CREATE = (
    """
CREATE OR REPLACE FUNCTION accounts_auditevent_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % of accounts_auditevent refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER accounts_auditevent_append_only
    BEFORE UPDATE OR DELETE ON accounts_auditevent
    FOR EACH ROW EXECUTE FUNCTION accounts_auditevent_refuse_change()
""",
)

DROP = (
    "DROP TRIGGER IF EXISTS accounts_auditevent_append_only ON accounts_auditevent",
    "DROP FUNCTION IF EXISTS accounts_auditevent_refuse_change()",
)


def _on_postgresql(statements: tuple[str, ...]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        # No parameters: the "%" of RAISE's format is not a placeholder.
        with schema_editor.connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_audit_event")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
