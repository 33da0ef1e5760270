"""deploy/healthcheck.py: the process matcher over a fake /proc, the URL check against a
loopback server, and which mode the environment selects."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import healthcheck


def fake_proc(root: Path, processes: dict[str, bytes]) -> Path:
    for pid, cmdline in processes.items():
        (root / pid).mkdir()
        (root / pid / "cmdline").write_bytes(cmdline)
    (root / "self").mkdir()  # not a pid
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    (root / "77").mkdir()  # a process that exited between listing and reading: no cmdline
    return root


@pytest.fixture
def proc(tmp_path) -> Path:
    return fake_proc(
        tmp_path,
        {
            "1": b"/usr/local/bin/python3.11\0/usr/local/bin/celery\0-A\0controlplane.celery\0beat\0",
            "12": b"python\0manage.py\0run_keeper\0",
            "30": b"python\0/app/deploy/healthcheck.py\0",
            "31": b"",  # a zombie or kernel thread
        },
    )


def test_matching_processes_finds_substrings_across_arguments(proc):
    assert healthcheck.matching_processes("controlplane.celery beat", proc=proc) == [1]
    assert healthcheck.matching_processes("run_keeper", proc=proc) == [12]
    assert healthcheck.matching_processes("python", proc=proc) == [1, 12, 30]
    assert healthcheck.matching_processes("consume_events", proc=proc) == []


def test_matching_processes_excludes_the_checker(proc):
    assert healthcheck.matching_processes("healthcheck", proc=proc, exclude={30}) == []


def test_process_mode_takes_precedence(proc):
    # The URL (a closed port) is not asked: the process decides.
    env = {"FERRY_HEALTHCHECK_PROCESS": "celery beat", "FERRY_HEALTHCHECK_URL": "http://127.0.0.1:9/"}
    assert healthcheck.check(env, proc=proc) is True
    assert healthcheck.check({**env, "FERRY_HEALTHCHECK_PROCESS": "consume_events"}, proc=proc) is False


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server calls do_<METHOD>
        status = {"/ok": 200, "/down": 503, "/moved": 302}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_is_healthy_on_2xx_only(server):
    assert healthcheck.url_is_healthy(f"{server}/ok") is True
    assert healthcheck.url_is_healthy(f"{server}/down") is False
    assert healthcheck.url_is_healthy(f"{server}/missing") is False
    assert healthcheck.url_is_healthy(f"{server}/moved") is False  # not followed


def test_url_check_fails_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        assert healthcheck.url_is_healthy(f"http://127.0.0.1:{port}/healthz", timeout=1) is False


def test_default_is_the_api(monkeypatch):
    seen = {}
    monkeypatch.setattr(healthcheck, "url_is_healthy", lambda url: seen.update(url=url) or True)
    assert healthcheck.check({}) is True
    assert seen == {"url": "http://127.0.0.1:8000/healthz"}


def test_main_exit_status(monkeypatch, proc):
    monkeypatch.setattr(os, "environ", {"FERRY_HEALTHCHECK_PROCESS": "no-such-process"})
    assert healthcheck.main() == 1
