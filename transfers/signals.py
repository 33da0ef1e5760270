"""What happens to transfers, routes and batches, announced to the apps above this one.

``transfers`` sits below ``notifications`` and ``workers`` in the one-way layering
(pyproject.toml, import-linter), so it cannot call them. It sends these signals instead, and
sends each one INSIDE the database transaction that makes the change: a receiver that writes
rows (the notifications outbox) commits or rolls back with the change itself. Receivers must
therefore be quick, must not do network I/O, and must not swallow database errors.

Every signal's ``sender`` is the model class concerned; the keyword arguments are listed
beside each one.
"""

from __future__ import annotations

from django.dispatch import Signal

# A transfer moved between states (transfers.states.transition, after its UPDATE).
# kwargs: transfer_id, from_state, to_state, attempt (int), at (datetime), detail (str).
transfer_state_changed = Signal()

# The three below carry the event's payload ready-made (``data``, a JSON-able dict documented
# in docs/notifications.md) and ``key``, a string unique to this occurrence and the same if it
# is ever sent again (a re-evaluation after a crash or a failover), from which the event's
# deterministic id is derived.

# A batch's last transfer became terminal; sent once per batch.
# kwargs: tenant_id, route_id, batch_id, key (str), data (dict).
batch_completed = Signal()

# A route's expectation window closed without the files it expects.
# kwargs: tenant_id, route_id, key (str), data (dict).
file_late = Signal()

# Files came for a window that had been reported late.
# kwargs: tenant_id, route_id, key (str), data (dict).
file_arrived_late = Signal()
