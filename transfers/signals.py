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

# A batch's last transfer became terminal; sent once per batch.
# kwargs: batch (the batch row).
batch_completed = Signal()

# A route's expectation window closed without the files it expects.
# kwargs: route, window_start (datetime), window_end (datetime), expected (int), seen (int).
file_late = Signal()

# Files came for a window that had been reported late.
# kwargs: route, window_start (datetime), window_end (datetime), seen (int), at (datetime).
file_arrived_late = Signal()
