"""Many rows that differ in a few columns, inserted in one statement: ``INSERT … SELECT …
FROM unnest(…) ON CONFLICT DO NOTHING RETURNING``.

A 10,000-file folder becomes 10,000 transfers, 10,000 timeline events and 10,000
observations. Django's ``bulk_create`` prepares and quotes every value of every column of
every row (about sixty columns a transfer) and, with ``ignore_conflicts``, cannot say which
rows it inserted, so intake read them back. Here the columns that are the same for every row
come from one prototype instance (prepared once, so every field default, ``auto_now`` and
JSON adaptation is Django's own), the varying columns travel as one array each, and
PostgreSQL's ``RETURNING`` names the rows this statement inserted: a row whose unique key
exists already (a repeated poll, a concurrent one) is skipped, as ``ignore_conflicts`` did
(docs/transfers.md, "Intake of a big folder").

The statement goes through Django's cursor, so the write-forwarding guard
(``controlplane.dbforwarding``) sees it like any other. On another database (the SQLite of
``make run``'s embedded defaults) the same contract is kept with Django's ``bulk_create``
(:func:`_insert_portably`): slower, and enough for one machine's demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault

CHUNK = 5000  # rows a statement: bounds the statement's size and the server's memory for it


def insert_ignoring_conflicts(
    prototype: Model, varying: Mapping[str, Sequence[Any]], *, returning: str | None = None
) -> list[Any]:
    """Insert one row per position of ``varying``'s lists (field name → one value a row, all
    the same length; plain values: text, numbers, UUIDs, datetimes, None), every other column
    as ``prototype`` has it. Rows that would break a unique constraint are left out.

    Returns the ``returning`` column (a field name) of the rows inserted, in no particular
    order; [] without ``returning``. ``prototype`` is not saved. The caller holds the
    transaction (one statement per :data:`CHUNK` rows).
    """
    lengths = {len(values) for values in varying.values()}
    if len(lengths) != 1:
        raise ValueError("every varying column needs one value a row")
    (count,) = lengths
    if not count:
        return []
    if connection.vendor != "postgresql":
        return _insert_portably(prototype, varying, count, returning)
    meta = prototype._meta
    columns: list[str] = []
    selects: list[str] = []
    constants: list[Any] = []
    arrays: list[tuple[str, Sequence[Any], str]] = []  # (column, values, element type)
    for field in meta.concrete_fields:
        db_type = field.db_type(connection)
        if field.name in varying:
            arrays.append((field.column, varying[field.name], db_type))
            columns.append(field.column)
            selects.append(f"u.{connection.ops.quote_name(field.column)}")
            continue
        value = field.pre_save(prototype, add=True)  # auto_now(_add) set as Django sets them
        if isinstance(value, DatabaseDefault) or (value is None and field.primary_key):
            continue  # the database's own default (or sequence) fills it
        columns.append(field.column)
        selects.append(f"%s::{db_type}")
        constants.append(field.get_db_prep_save(value, connection))
    unknown = set(varying) - {f.name for f in meta.concrete_fields}
    if unknown:
        raise ValueError(f"not columns of {meta.label}: {sorted(unknown)}")
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    unnest = ", ".join(f"%s::{db_type}[]" for _, _, db_type in arrays)
    aliases = ", ".join(qn(column) for column, _, _ in arrays)
    # Names from the model's own metadata, quoted; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
        f"SELECT {', '.join(selects)} FROM unnest({unnest}) AS u({aliases}) "
        "ON CONFLICT DO NOTHING"
    )
    if returning:
        sql += f" RETURNING {qn(meta.get_field(returning).column)}"
    # The constants come first in the text (the SELECT list), then the arrays (FROM).
    out: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, count, CHUNK):
            params = [*constants, *(list(values[start : start + CHUNK]) for _, values, _ in arrays)]
            cursor.execute(sql, params)
            if returning:
                out.extend(row[0] for row in cursor.fetchall())
    return out


def _insert_portably(
    prototype: Model, varying: Mapping[str, Sequence[Any]], count: int, returning: str | None
) -> list[Any]:
    """:func:`insert_ignoring_conflicts` without PostgreSQL's arrays: ``bulk_create`` with
    ``ignore_conflicts``, then the inserted rows read back by primary key. Only the primary
    key can be asked back, and only when the caller chose fresh values for it (a row holding
    one of them is then this statement's)."""
    meta = prototype._meta
    if returning is not None and (returning != meta.pk.name or returning not in varying):
        raise ValueError("without PostgreSQL only fresh primary keys can be returned")
    base = {f.attname: getattr(prototype, f.attname) for f in meta.concrete_fields if f.name not in varying}
    attnames = {name: meta.get_field(name).attname for name in varying}  # type: ignore[union-attr]
    rows = [meta.model(**base, **{attnames[name]: values[i] for name, values in varying.items()}) for i in range(count)]
    meta.model._default_manager.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    if returning is None:
        return []
    keys = list(varying[returning])
    found: list[Any] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.extend(meta.model._default_manager.filter(pk__in=chunk).values_list("pk", flat=True))
    return found
