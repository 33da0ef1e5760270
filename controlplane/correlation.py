"""One correlation id from the request to the bytes (docs/observability.md).

The id is the ``request_id`` of the log context (``controlplane.logs``): the API's
middleware binds it for a request, the keeper, the event consumer and the scheduler bind
a new one for each piece of work they start. Three things carry it further:

- every Celery message published while an id is bound carries it in a header
  (:data:`HEADER`, added by :func:`stamp_message`); the worker binds it before the task
  runs (:func:`bind_task`) and clears the context after (:func:`unbind_task`);
- a transfer stores the id of the work that created it (``Transfer.request_id``), so a
  retry the keeper dispatches long after the first message is gone, a re-drive or an
  after-delivery action still logs the creating request's id;
- the runner copies the context into the threads it starts (heartbeat, batch members);
  the engine's loop and thread pool take the caller's context themselves
  (``engine.runtime``).

These are Ferry's own handlers rather than django-guid's Celery integration: django-guid
keeps its id in its own context variable, set by its own middleware (which accepts only
UUIDs and would replace the ``X-Request-ID`` Ferry keeps), so using it would mean two ids
kept in step, or a bridge from one to the other on every log line.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.conf import settings

from controlplane import logs

HEADER = "ferry_request_id"

# What an incoming X-Request-ID or message header may be: short, and safe in a log line
# and a response header.
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    """A fresh correlation id, for work that no request started (a tick, an event)."""
    return uuid.uuid4().hex


def valid_request_id(value: object) -> str | None:
    """``value`` if it is an acceptable correlation id, else None."""
    return value if isinstance(value, str) and _VALID.match(value) else None


def current_request_id() -> str:
    """The correlation id bound now ("" when none is)."""
    return valid_request_id(logs.current().get("request_id")) or ""


@before_task_publish.connect(weak=False, dispatch_uid="ferry.correlation.stamp")
def stamp_message(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Put the bound correlation id in the message's headers (kombu's SQS transport
    carries headers inside the message body, so they survive the queue)."""
    request_id = current_request_id()
    if headers is not None and request_id and HEADER not in headers:
        headers[HEADER] = request_id


@task_prerun.connect(weak=False, dispatch_uid="ferry.correlation.bind")
def bind_task(task: Any = None, **kwargs: Any) -> None:
    """Bind the message's correlation id (a new one when it has none: a beat tick, a
    message from an older release) for the task's log lines."""
    request = task.request if task is not None else None
    header = request.get(HEADER) if request is not None else None
    logs.clear()
    logs.bind(
        request_id=valid_request_id(header) or new_request_id(),
        region=settings.FERRY_REGION,
        task=getattr(task, "name", None),
        # Celery's own "received" line (the worker's main process, before any task
        # context) names the message by this id: it joins that line to the task's.
        task_id=getattr(request, "id", None),
    )


@task_postrun.connect(weak=False, dispatch_uid="ferry.correlation.unbind")
def unbind_task(**kwargs: Any) -> None:
    """Forget the task's context: the next task on this process starts clean."""
    logs.clear()
