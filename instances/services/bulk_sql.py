"""Raw SQL bulk writes for the ping store: PostgreSQL COPY for new pings, one-``executemany``
UPDATEs by primary key, and the value conversions a raw query needs on each database.

The ORM's ``bulk_create``/``bulk_update`` are correct but slow at a bulk load's sizes; these
keep the same results (ids set, IntegrityError on a duplicate) at a fraction of the cost.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence

from django.db import connection, models

from instances.models import UsagePing

#: Fewest pings written with COPY rather than one INSERT.
COPY_FROM = 20


def pings_insert(pings: list[UsagePing]) -> None:
    """Insert new pings and set their ids: on PostgreSQL COPY for a bulk load's batches and one
    INSERT … RETURNING for the HTTP ingest's few pings, ``bulk_create`` elsewhere.

    COPY (binary) sends the compressed payloads as raw bytes instead of hex literals inside a
    multi-megabyte INSERT; at full-size payloads it is about five times faster. Below
    ``COPY_FROM`` pings its two round trips cost more than they save, and the plain INSERT
    skips ``bulk_create``'s compiling of ~50 fields a row (0.45 ms of CPU a batch of three).
    """
    if not pings:
        return
    # In (instance, moment) order, as every writer does: two batches inserting the same new
    # pings in different orders would wait on each other's unique-index entries.
    pings = sorted(pings, key=lambda ping: (ping.instance_id, ping.recorded_at))
    if connection.vendor != "postgresql":
        UsagePing.objects.bulk_create(pings, batch_size=500)
        return
    meta = UsagePing._meta
    fields = _ping_fields()
    if len(pings) < COPY_FROM:
        # One array per column, whatever the batch's size: the statement's text never changes,
        # so psycopg parses it once (a VALUES list of 41 placeholders a row was parsed again for
        # every batch, a tenth of a five-ping batch's CPU), and the arrays go in binary (the
        # payloads as bytes, not hex text): the batch's store ~10 % less CPU, measured.
        columns = [[getattr(ping, f.attname) for ping in pings] for f in fields]
        with bound_cursor() as cursor:
            cursor.execute(_insert_sql(), columns)
            ids = {(instance_id, moment): pk for pk, instance_id, moment in cursor.fetchall()}
        _stored(pings, [ids[(ping.instance_id, ping.recorded_at)] for ping in pings])
        return
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
                # Attribute values are plain Python values (str, int, bool, datetime, bytes,
                # None) that psycopg writes directly; no field needs Django's conversion.
                copy.write_row([pk, *(getattr(ping, f.attname) for f in fields)])
    _stored(pings, ids)


def pings_existing(instance_ids: set[int], recorded: set) -> list[tuple]:
    """(instance id, recorded_at, ping id, subscription id) of the stored pings of these
    instances at any of these moments. Raw on PostgreSQL: the ORM's compiling cost more CPU
    than the query (0.25 ms against 0.05, measured) on every batch the HTTP ingest stores."""
    if not instance_ids or not recorded:
        return []
    if connection.vendor != "postgresql":
        return list(
            UsagePing.objects.filter(
                instance_id__in=instance_ids, recorded_at__in=recorded
            ).values_list("instance_id", "recorded_at", "id", "subscription_id")
        )
    table = connection.ops.quote_name(UsagePing._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT instance_id, recorded_at, id, subscription_id FROM {table} "
            "WHERE instance_id = ANY(%s) AND recorded_at = ANY(%s)",
            [sorted(instance_ids), sorted(recorded)],
        )
        return cursor.fetchall()


def models_select(model, where: str, params: Sequence, *, related: str | None = None) -> list:
    """PostgreSQL only: the rows of ``model`` matching ``where`` (SQL over its table, named
    ``t``), as model instances, with the row of the nullable foreign key ``related`` (a model
    instance or None) attached as ``select_related`` would.

    For the few lookups every batch of pings makes: compiling them through the ORM cost more
    CPU than running them (three accounts' instances: 0.18 ms against 0.06; their licenses with
    subscriptions, 0.47 against 0.12 — measured), and the HTTP ingest makes them per batch.
    """
    qn = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = [f"t.{qn(f.column)}" for f in fields]
    joined: list = []
    join = ""
    if related is not None:
        fk = model._meta.get_field(related)
        target = fk.related_model
        joined = target._meta.concrete_fields
        columns += [f"r.{qn(f.column)}" for f in joined]
        join = (
            f" LEFT JOIN {qn(target._meta.db_table)} r ON r.{qn(fk.target_field.column)}"
            f" = t.{qn(fk.column)}"
        )
    sql = f"SELECT {', '.join(columns)} FROM {qn(model._meta.db_table)} t{join} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        rows = cursor.fetchall()
    names = [f.attname for f in fields]
    joined_names = [f.attname for f in joined]
    out = []
    width = len(fields)
    for row in rows:
        obj = model.from_db(connection.alias, names, row[:width])
        if related is not None:
            value = (
                None
                if getattr(obj, fk.attname) is None
                else target.from_db(connection.alias, joined_names, row[width:])
            )
            fk.set_cached_value(obj, value)
        out.append(obj)
    return out


@functools.cache
def _ping_fields() -> list:
    """The ping's columns a writer sets: every one but the id."""
    return [f for f in UsagePing._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql() -> str:
    """INSERT of one array per column; each row's id comes back with its (instance, moment),
    unique among stored pings, so no reliance on the order RETURNING gives them in."""
    meta = UsagePing._meta
    fields = _ping_fields()
    qn = connection.ops.quote_name
    arrays = ", ".join(f"%b::{_pg_type(f)}[]" for f in fields)  # %b: binary
    return (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"RETURNING {qn(meta.pk.column)}, {qn('instance_id')}, {qn('recorded_at')}"
    )


@contextlib.contextmanager
def bound_cursor() -> Iterator:
    """A cursor of the default connection that sends its parameters apart from the SQL
    (PostgreSQL's server-side binding), wrapped as Django wraps its own: the same error
    translation, query logging and execute wrappers (the query metrics).

    Django's cursors bind on the client (parameters written into the SQL text): right for the
    ORM's queries, but a ``bytea`` travels as hex text twice its size, and an array of them is
    escaped element by element. Prepared statements stay off (``prepare_threshold``), as on
    Django's own cursors: a connection pooler may be in between.
    """
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = ServerBindingCursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(raw) as cursor:
        yield cursor


def _stored(pings: list[UsagePing], ids: list[int]) -> None:
    for ping, pk in zip(pings, ids, strict=True):
        ping.pk = pk
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
    # In primary-key order, as every writer does: two batches updating the same rows in
    # different orders would deadlock (seen with two web processes storing pings of one
    # account's licenses at once).
    objs = sorted(objs, key=lambda obj: obj.pk)
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
