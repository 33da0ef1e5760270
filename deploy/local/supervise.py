"""``make run`` keeps Ferry's processes running: one that exits is started again.

On AWS, ECS does this for every task (docs/deploy.md). Locally a worker that exits (a crash,
an out-of-memory kill, a bug) used to stop the whole stack; now the supervisor prints the exit
to the terminal, marks it in the process's log, and starts the same command again after a
backoff (1 s, doubling to 30 s while it keeps exiting within a minute of its start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.local import services

BACKOFF_CAP = 30.0  # seconds between restarts of a process that keeps exiting
STABLE_AFTER = 60.0  # a process that ran this long before exiting starts again after 1 s


def restart_delay(quick_exits: int) -> float:
    """Seconds to wait before restarting a process that exited ``quick_exits`` times in a row
    within :data:`STABLE_AFTER` of its start (1, 2, 4, … up to :data:`BACKOFF_CAP`)."""
    return min(BACKOFF_CAP, 2.0 ** max(0, quick_exits - 1))


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: services.Process
    started: float
    quick_exits: int = 0
    restarts: int = 0
    restart_at: float | None = None  # set while it waits out its backoff


class Supervisor:
    def __init__(self, *, say: Callable[[str], None] = print) -> None:
        self.children: list[Child] = []
        self.say = say

    def spawn(self, command: list[str], *, name: str, env: dict[str, str], log_path: Path) -> services.Process:
        process = services.spawn(command, name=name, env=env, log_path=log_path)
        self.children.append(Child(name, command, env, log_path, process, started=time.monotonic()))
        return process

    def processes(self) -> list[services.Process]:
        return [child.process for child in self.children]

    def check(self) -> None:
        """Restart what exited and has waited out its backoff; call it every second or so."""
        now = time.monotonic()
        for child in self.children:
            code = child.process.proc.poll()
            if code is None:
                continue
            if child.restart_at is None:
                ran = now - child.started
                child.quick_exits = child.quick_exits + 1 if ran < STABLE_AFTER else 1
                delay = restart_delay(child.quick_exits)
                child.restart_at = now + delay
                message = f"{child.name} exited (code {code}) after {ran:.0f} s; restarting in {delay:.0f} s"
                self.say(f"{time.strftime('%H:%M:%S')}  {message} (log: {child.log_path})")
                with child.log_path.open("a") as log:
                    log.write(f"--- make run: {message} ---\n")
            elif now >= child.restart_at:
                child.process = services.spawn(child.command, name=child.name, env=child.env, log_path=child.log_path)
                child.started, child.restart_at = now, None
                child.restarts += 1
                self.say(f"{time.strftime('%H:%M:%S')}  {child.name} restarted (restart {child.restarts})")
