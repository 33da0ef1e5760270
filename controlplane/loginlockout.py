"""django-axes' database handler, made safe for Aurora write forwarding.

Axes records a failed login with ``select_for_update().get_or_create(...)`` inside its own
``transaction.atomic()``. When the row does not exist yet, ``get_or_create`` creates it in
a nested ``atomic()``: a SAVEPOINT, which write forwarding refuses
(controlplane/dbforwarding.py). Admin logins happen in every region, the secondary's
included, so the first failure of a username from an address would be a 500 there.

This handler first makes sure the row exists with ``INSERT … ON CONFLICT DO NOTHING``
(``bulk_create(ignore_conflicts=True)``, one plain statement on the unique
username/address/user-agent triple), with zero failures; axes' own code then always finds
it, takes its row lock and counts the failure, without a savepoint. Everything else is
axes' (the lockout decision, the access log, the reset on success).
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_lockout_parameters
from axes.models import AccessAttempt
from django.http import HttpRequest


class ForwardingSafeHandler(AxesDatabaseHandler):
    def user_login_failed(self, sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any):
        if request is not None and not getattr(request, "axes_locked_out", False):
            username = get_client_username(request, credentials)
            key = {
                "username": username,
                "ip_address": request.axes_ip_address,  # type: ignore[attr-defined]
                "user_agent": request.axes_user_agent,  # type: ignore[attr-defined]
            }
            counted = not (get_lockout_parameters(request, credentials) == ["username"] and username is None)
            # The unique constraint cannot catch a NULL username or address (NULLs are
            # distinct), so look first; a concurrent twin of such a login is the one gap.
            if counted and not AccessAttempt.objects.filter(**key).exists():
                AccessAttempt.objects.bulk_create(
                    [
                        AccessAttempt(
                            **key,
                            http_accept=request.axes_http_accept,  # type: ignore[attr-defined]
                            path_info=request.axes_path_info,  # type: ignore[attr-defined]
                            attempt_time=request.axes_attempt_time,  # type: ignore[attr-defined]
                            get_data="",
                            post_data="",
                            failures_since_start=0,
                        )
                    ],
                    ignore_conflicts=True,
                )
        return super().user_login_failed(sender, credentials, request, **kwargs)
