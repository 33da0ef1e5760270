"""The container health check of Ferry's one image (``HEALTHCHECK`` and ECS ``healthCheck``).

Standard library only, so it starts fast and needs neither Django nor the network beyond
loopback. Exit status 0 means healthy, 1 unhealthy. Two modes, from the environment:

- ``FERRY_HEALTHCHECK_PROCESS=<text>``: healthy while some process's command line contains
  the text (celery beat, which serves no HTTP). Takes precedence over the URL mode.
- otherwise ``FERRY_HEALTHCHECK_URL`` (default ``http://127.0.0.1:8000/healthz``, the API):
  healthy when a GET answers 2xx within 3 s. Redirects count as unhealthy. The API's
  ``/healthz`` answers whatever the ``Host`` (``LivenessProbeMiddleware``), and the metrics
  ports check none.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_SECONDS = 3.0


def matching_processes(text: str, *, proc: Path = Path("/proc"), exclude: Iterable[int] = ()) -> list[int]:
    """Pids under ``proc`` whose command line contains ``text`` (arguments joined by spaces)."""
    skip = set(exclude)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text in raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"):
            found.append(int(entry.name))
    return sorted(found)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is an answer, and not a healthy one


def url_is_healthy(url: str, *, timeout: float = TIMEOUT_SECONDS) -> bool:
    """GET ``url``; healthy on a 2xx answer within ``timeout`` seconds."""
    request = urllib.request.Request(url)  # noqa: S310 (our own URL)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):  # HTTPError (4xx/5xx, 3xx) is a URLError
        return False


def check(env: Mapping[str, str], *, proc: Path = Path("/proc")) -> bool:
    """The health of this container, as configured by ``env``."""
    process = env.get("FERRY_HEALTHCHECK_PROCESS")
    if process:
        # Not this check itself, nor the shell that may have started it (CMD-SHELL).
        return bool(matching_processes(process, proc=proc, exclude={os.getpid(), os.getppid()}))
    return url_is_healthy(env.get("FERRY_HEALTHCHECK_URL") or DEFAULT_URL)


def main() -> int:
    return 0 if check(os.environ) else 1


if __name__ == "__main__":
    sys.exit(main())
