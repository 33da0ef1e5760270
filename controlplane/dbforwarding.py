"""Aurora global write forwarding: the SQL a forwarded connection may not send, refused locally.

On AWS the region that does not hold the Aurora writer connects to its own cluster's reader
endpoint, and Aurora forwards its writes to the writer region. Forwarding refuses some
statements outright (Amazon Aurora User Guide, "Limitations and considerations of local write
forwarding in Aurora PostgreSQL" and "Using write forwarding in an Aurora PostgreSQL global
database"): ANALYZE, CLUSTER, COPY, cursors, DDL, GRANT/REVOKE/REASSIGN OWNED/SECURITY LABEL,
LISTEN/NOTIFY, LOCK, SAVEPOINT, SELECT INTO, SET CONSTRAINTS, nextval()/setval(), TRUNCATE,
two-phase commit, user-defined functions and procedures, VACUUM. DML, SELECT ... FOR UPDATE
/ SHARE, PREPARE/EXECUTE and EXPLAIN pass.

PostgreSQL and SQLite accept all of that, so the local and test profiles put the rule back
on a forwarded connection (``settings.FERRY_DATABASE_WRITER_REGION`` is not this process's
``FERRY_REGION``): :func:`install` adds an execute wrapper that refuses such statements
with :class:`WriteForwardingRefused` before they reach the server, and refuses Django's
server-side cursors (``QuerySet.iterator()`` on PostgreSQL) in ``chunked_cursor``, which the
wrapper cannot see: the cursor's ``DECLARE`` is sent by psycopg, and the wrapper only sees
the ``SELECT`` inside it. Savepoints (every nested ``transaction.atomic()``) do go through
the wrapper as ``SAVEPOINT`` / ``RELEASE SAVEPOINT`` / ``ROLLBACK TO SAVEPOINT``.

User-defined functions cannot be told apart from built-in ones by reading the SQL (Ferry
defines none); of that rule only ``CALL`` (procedures are always user-defined) is refused.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any

import sqlparse
from django.conf import settings
from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from sqlparse import tokens as T
from sqlparse.sql import Statement

log = logging.getLogger(__name__)

# Leading words of a statement → the rule that refuses it. The longest match wins.
_BY_HEAD: dict[tuple[str, ...], str] = {
    ("SAVEPOINT",): "SAVEPOINT",
    ("RELEASE",): "SAVEPOINT",  # RELEASE [SAVEPOINT] name
    ("ROLLBACK", "TO"): "SAVEPOINT",  # ROLLBACK TO [SAVEPOINT] name
    ("PREPARE", "TRANSACTION"): "two-phase commit",
    ("COMMIT", "PREPARED"): "two-phase commit",
    ("ROLLBACK", "PREPARED"): "two-phase commit",
    ("LOCK",): "LOCK",
    ("DECLARE",): "cursors",
    ("FETCH",): "cursors",
    ("MOVE",): "cursors",
    ("CLOSE",): "cursors",
    ("CREATE",): "DDL",
    ("ALTER",): "DDL",
    ("DROP",): "DDL",
    ("COMMENT",): "DDL",
    ("TRUNCATE",): "TRUNCATE",
    ("GRANT",): "GRANT/REVOKE",
    ("REVOKE",): "GRANT/REVOKE",
    ("REASSIGN",): "REASSIGN OWNED",
    ("SECURITY", "LABEL"): "SECURITY LABEL",
    ("LISTEN",): "LISTEN/NOTIFY",
    ("UNLISTEN",): "LISTEN/NOTIFY",
    ("NOTIFY",): "LISTEN/NOTIFY",
    ("SET", "CONSTRAINTS"): "SET CONSTRAINTS",
    ("ANALYZE",): "ANALYZE",
    ("CLUSTER",): "CLUSTER",
    ("COPY",): "COPY",
    ("VACUUM",): "VACUUM",
    ("CALL",): "user-defined procedures",
}
_HEAD_WORDS = max(len(head) for head in _BY_HEAD)
_SEQUENCE_FUNCTIONS = frozenset({"nextval", "setval"})


class WriteForwardingRefused(NotSupportedError):
    """A statement Aurora's write forwarding refuses, stopped before it left the process.

    A ``NotSupportedError`` because that is what Django raises for the server's
    ``feature_not_supported`` error. ``rule`` names the documented limitation.
    """

    def __init__(self, rule: str, sql: str) -> None:
        self.rule = rule
        self.sql = sql
        super().__init__(
            f"{rule} is not supported with Aurora write forwarding; this process's database connection is "
            f"forwarded (FERRY_REGION {settings.FERRY_REGION}, writer {settings.FERRY_DATABASE_WRITER_REGION}). "
            f"Statement: {sql[:300]}"
        )


def _meaningful(statement: Statement) -> list[Any]:
    return [t for t in statement.flatten() if not t.is_whitespace and t.ttype not in T.Comment]


def _is_word(token: Any) -> bool:
    # Keywords and bare names; string literals, quoted identifiers and numbers are not words.
    return token.ttype in T.Keyword or (token.ttype in T.Name and token.ttype not in T.Name.Placeholder)


def _head(tokens: list[Any]) -> tuple[str, ...]:
    """The statement's first words, upper case (after any opening parentheses)."""
    words: list[str] = []
    for token in tokens:
        if not words and token.match(T.Punctuation, "("):
            continue
        if not _is_word(token):
            break
        words.extend(token.value.upper().split())
        if len(words) >= _HEAD_WORDS:
            break
    return tuple(words)


def _selects_into(statement: Statement) -> bool:
    # SELECT ... INTO new_table: the first top-level DML keyword is SELECT and INTO stands at
    # the top level (INSERT INTO has INSERT first; an INTO inside a CTE is nested, not top).
    top = [t for t in statement.tokens if not t.is_whitespace]
    dml = next((t for t in top if t.ttype in T.Keyword.DML), None)
    return dml is not None and dml.normalized == "SELECT" and any(t.match(T.Keyword, "INTO") for t in top)


def _calls_sequence_function(tokens: list[Any]) -> str | None:
    for token, following in itertools.pairwise(tokens):
        if token.ttype in T.Name or token.ttype in T.String.Symbol:
            name = token.value.strip('"').lower()
            if name in _SEQUENCE_FUNCTIONS and following.match(T.Punctuation, "("):
                return f"{name}()"
    return None


def _classify_statement(statement: Statement) -> str | None:
    tokens = _meaningful(statement)
    if not tokens:
        return None
    head = _head(tokens)
    for length in range(min(len(head), _HEAD_WORDS), 0, -1):
        rule = _BY_HEAD.get(head[:length])
        if rule:
            return rule
    if _selects_into(statement):
        return "SELECT INTO"
    function = _calls_sequence_function(tokens)
    if function:
        return f"sequence updates ({function})"
    return None


@functools.lru_cache(maxsize=4096)
def refused_by(sql: str) -> str | None:
    """The write-forwarding rule that refuses ``sql`` (any of its statements), or None.

    A pure function of the text: words inside string literals, quoted identifiers and
    comments do not count, and a column named ``lock`` is not a LOCK statement. Cached:
    Django sends the same parameterised SQL again and again.
    """
    for statement in sqlparse.parse(sql):
        rule = _classify_statement(statement)
        if rule:
            return rule
    return None


# --- the guard on a connection ----------------------------------------------------------


def is_forwarded() -> bool:
    """Whether this process's database connection is forwarded: it is not in the writer's region."""
    return settings.FERRY_DATABASE_WRITER_REGION != settings.FERRY_REGION


def _refuse(rule: str, sql: str) -> WriteForwardingRefused:
    # Logged as well as raised: a caller that swallows database errors (a retry loop, a
    # keeper tick) must not hide the violation; the fault tests look for this line.
    log.error("write forwarding refuses this statement", extra={"rule": rule, "sql": sql[:300]})
    return WriteForwardingRefused(rule, sql)


def guard(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """The execute wrapper: refuse what forwarding refuses, pass everything else on."""
    rule = refused_by(str(sql))
    if rule:
        raise _refuse(rule, str(sql))
    return execute(sql, params, many, context)


def _refuse_chunked_cursor(*_args: Any, **_kwargs: Any) -> Any:
    raise _refuse("cursors", "DECLARE ... CURSOR (a server-side cursor: QuerySet.iterator())")


def install(connection: BaseDatabaseWrapper) -> None:
    """Refuse on ``connection`` what write forwarding refuses (idempotent)."""
    if guard not in connection.execute_wrappers:
        connection.execute_wrappers.append(guard)
    # An instance attribute shadows the backend's method: .iterator() asks for it.
    connection.chunked_cursor = _refuse_chunked_cursor  # type: ignore[method-assign]


def uninstall(connection: BaseDatabaseWrapper) -> None:
    """Take the guard off ``connection`` again (tests)."""
    while guard in connection.execute_wrappers:
        connection.execute_wrappers.remove(guard)
    connection.__dict__.pop("chunked_cursor", None)


def installed(connection: BaseDatabaseWrapper) -> bool:
    return guard in connection.execute_wrappers


_announced = False  # the first guarded connection of a process says so in the log


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: guard every new connection of a forwarded process in
    the local and test profiles. Production needs no guard: Aurora refuses by itself."""
    global _announced
    if settings.FERRY_PROFILE in {"local", "test"} and is_forwarded():
        install(connection)
        if not _announced:
            _announced = True
            log.info(
                "database connection guarded as write-forwarded",
                extra={"region": settings.FERRY_REGION, "writer": settings.FERRY_DATABASE_WRITER_REGION},
            )
