"""Raw SQL bulk writes for the ping store: PostgreSQL COPY for new pings, one-``executemany``
UPDATEs by primary key, and the value conversions a raw query needs on each database.

The ORM's ``bulk_create``/``bulk_update`` are correct but slow at a bulk load's sizes; these
keep the same results (ids set, IntegrityError on a duplicate) at a fraction of the cost.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection, models

from instances.models import UsagePing


def pings_insert(pings: list[UsagePing]) -> None:
    """Insert new pings and set their ids: COPY on PostgreSQL, ``bulk_create`` elsewhere.

    COPY (binary) sends the compressed payloads as raw bytes instead of hex literals inside a
    multi-megabyte INSERT; at full-size payloads it is about five times faster.
    """
    if connection.vendor != "postgresql" or len(pings) < 20:
        UsagePing.objects.bulk_create(pings, batch_size=500)
        return
    meta = UsagePing._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(pings)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        columns = ", ".join(qn(c) for c in [meta.pk.column, *(f.column for f in fields)])
        types = [_pg_type(meta.pk), *(_pg_type(f) for f in fields)]
        copy_sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
        # The raw psycopg cursor bypasses Django's error translation: restore it, so that a
        # duplicate raises IntegrityError (and pings_store retries) as with bulk_create.
        with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
            copy.set_types(types)
            for ping, pk in zip(pings, ids, strict=True):
                ping.pk = pk
                # Attribute values are plain Python values (str, int, bool, datetime, bytes,
                # None) that psycopg writes directly; no field needs Django's conversion.
                copy.write_row([pk, *(getattr(ping, f.attname) for f in fields)])
    for ping in pings:
        ping._state.adding = False
        ping._state.db = connection.alias


def _pg_type(field) -> str:
    if field.is_relation:
        field = field.target_field
    # "varchar(64)" -> "varchar"; "timestamp with time zone" is known to psycopg as timestamptz.
    name = field.db_type(connection).split("(")[0].strip()
    return {"timestamp with time zone": "timestamptz", "bigserial": "int8"}.get(name, name)


def rows_update(model, objs: Sequence, fields: list[str]) -> None:
    """UPDATE each object's row by primary key, all statements in one ``executemany``.

    For hundreds of rows this is far cheaper than ``bulk_update``'s CASE expressions (psycopg
    pipelines the statements; SQLite runs them in-process).
    """
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in columns)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"
    prepare = db_preparers(columns)
    params = [
        [
            value if conv is None else conv(value)
            for conv, value in zip(prepare, (getattr(obj, f.attname) for f in columns), strict=True)
        ]
        + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def db_preparers(fields) -> list:
    """Per field, the conversion its values need before a raw query, or None.

    Ints, strings, booleans and None go as they are; dates and datetimes need Django's
    adaptation on SQLite (text in Django's own format), not on PostgreSQL. Calling
    ``get_db_prep_save`` for every value instead costs more than the query itself.
    """
    if connection.vendor == "postgresql":
        return [None] * len(fields)
    return [
        functools.partial(f.get_db_prep_save, connection=connection)
        if isinstance(f, models.DateField)
        else None
        for f in fields
    ]
