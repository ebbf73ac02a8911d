"""Processes and ports on this machine: a free loopback port, children that die with their
parent, and stopping a process group for good."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gongji.local.errors import StackError


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def stop_signal(name: str) -> signal.Signals:
    """The signal that stops server `name` quickly and cleanly."""
    # PostgreSQL's SIGTERM is a smart shutdown, which waits for every client to leave; SIGINT is
    # the fast one (roll back, disconnect, stop).
    return signal.SIGINT if name == "postgres" else signal.SIGTERM


def yield_cpu(pid: int, increment: int) -> int:
    """Make process `pid` `increment` nicer than this process (at most 19, as `nice -n`): on shared
    cores it then runs on what the others leave. Threads it starts later inherit it. Returns its
    niceness."""
    niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
    if increment:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    return niceness


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM):
    """preexec_fn: have the kernel send `sig` to the child when its parent exits (Linux only).

    PR_SET_PDEATHSIG follows the thread that forked, so start the stack from a long-lived thread.
    """
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before fork, not in the child

    def preexec() -> None:
        prctl(1, sig)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return preexec


def terminate(pid: int, process: subprocess.Popen[bytes] | None = None, grace: float = 5.0,
              first: signal.Signals = signal.SIGTERM) -> None:
    """`first` (SIGTERM), wait up to `grace` seconds, then SIGKILL; the whole process group (own session)."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid, process):
                return
            time.sleep(0.05)
    if alive(pid, process):
        raise StackError(f"process {pid} survived SIGKILL")


def alive(pid: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    if process is not None:
        return process.poll() is None
    try:  # our own child (stack_up and stack_down in one process): reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True, slots=True)
class Started:
    """A service process just started, writing to `log` from `offset` on; `ready`: the line it writes
    once it serves (its first group is returned: the address), None for a service with no address."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    offset: int
    ready: re.Pattern[bytes] | None = None


def _last_line(started: Started) -> str:
    with open(started.log, "rb") as log:
        log.seek(started.offset)
        lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _why(started: Started) -> str:
    """One line: the service and why it stopped (its last line, which names it or is given its name)."""
    line = _last_line(started).removeprefix("gongji: ")
    if not line:
        return f"{started.name}: exited with status {started.process.returncode} (its log: {started.log})"
    return line if line.startswith(started.name) else f"{started.name}: {line}"


def wait_started(services: list[Started], timeout: float) -> dict[str, str]:
    """Until every service with a `ready` line has written it (name → its address); StackError
    naming the first service that died meanwhile, and why, or one that did not serve in time."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for started in services:
            if started.process.poll() is not None:
                raise StackError(_why(started))
            if started.ready is not None and started.name not in found:
                with open(started.log, "rb") as log:
                    log.seek(started.offset)
                    match = started.ready.search(log.read())
                if match:
                    found[started.name] = match.group(1).decode()
        if all(started.ready is None or started.name in found for started in services):
            return found
        if time.monotonic() > deadline:
            late = next(started for started in services if started.ready is not None and started.name not in found)
            raise StackError(f"{late.name}: not serving {timeout:.0f} s after it started (its log: {late.log})")
        time.sleep(0.1)  # polling the processes and their logs for the positive marker
