"""The whole test database as text: what secrecy tests search for a secret."""

from __future__ import annotations

from django.db import connection


def database_text() -> str:
    """Every row of every table, as JSON text, one row per line."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)
