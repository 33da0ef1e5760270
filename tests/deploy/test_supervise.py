"""``make run`` restarts a Ferry process that exits (issue 13, item 13), with real processes."""

from __future__ import annotations

import signal
import sys
import time

from deploy.local import services
from deploy.local.supervise import BACKOFF_CAP, Supervisor, restart_delay


def test_restart_delays_double_up_to_the_cap() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay(50) == BACKOFF_CAP


def test_a_killed_process_is_restarted_and_said_so(tmp_path) -> None:
    said: list[str] = []
    supervisor = Supervisor(say=said.append)
    log = tmp_path / "worker-us-east-1.log"
    first = supervisor.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"], name="worker-us-east-1", env={}, log_path=log
    )
    try:
        first.signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        supervisor.check()
        assert "worker-us-east-1 exited (code -9)" in said[-1]
        assert "restarting in 1 s" in log.read_text()
        deadline = time.monotonic() + 10
        while supervisor.children[0].process is first and time.monotonic() < deadline:
            time.sleep(0.1)
            supervisor.check()
        second = supervisor.children[0].process
        assert second is not first and second.proc.poll() is None
        assert "worker-us-east-1 restarted (restart 1)" in said[-1]
    finally:
        services.stop_together(supervisor.processes())
