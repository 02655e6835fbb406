"""The thin OS layer of the supervisor: fork, signal, reap, titles, systemd.

Everything here is a system call with a little bookkeeping around it; every
decision lives in :mod:`fuwad.policy` and :mod:`fuwad.supervisor`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

import setproctitle

from fuwad import log as fuwad_log

log = logging.getLogger("fuwad.proc")

EXIT_CRASH = 70
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
CHILD_RESET_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
    signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1,
)


@dataclass(frozen=True, slots=True)
class Exit:
    """How a reaped child ended."""

    pid: int
    code: int | None
    signal: int | None

    def describe(self, oom_hint: bool = True) -> str:
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            text = f"killed by signal {self.signal} ({name})"
            if self.signal == signal.SIGKILL and oom_hint:
                text += "; out of memory? see the kernel log (dmesg)"
            return text
        return f"exited with code {self.code}"


def fork(run: Callable[[], int], keep: Collection[int] = ()) -> int:
    """Fork a child that runs ``run`` and leaves through ``os._exit``.

    The child must not touch anything of the parent's but the file
    descriptors in ``keep``: not its selector, its sockets, its other
    children's links or its signal handlers.  It closes every other
    inherited descriptor, restores default signal handling, and builds
    its own event loop and connections inside ``run``.
    """
    threads = threading.active_count()
    if threads > 1:
        # A lock held by another thread at fork() stays held in the child
        # for ever; the supervisor is built to have no threads.
        log.warning("forking with threads running count=%d", threads)
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_CRASH
    try:
        signal.set_wakeup_fd(-1)
        for signum in CHILD_RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        _close_inherited(set(keep) | {0, 1, 2})
        # A supervisor killed with SIGKILL cannot stop its children: have
        # the kernel send SIGTERM (drain) then, and check it is not too late.
        _die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)
        code = run()
    except BaseException:  # the child must never return into the parent
        log.exception("child crashed pid=%d", os.getpid())
        code = EXIT_CRASH
    finally:
        fuwad_log.flush()
        os._exit(code)


def _die_with_parent(signum: int) -> None:
    """Ask Linux to send ``signum`` when the parent process dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the link's end of file still tells workers


def _close_inherited(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own descriptor, already closed


def reap() -> list[Exit]:
    """Collect every child that has ended, without blocking."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if os.WIFSIGNALED(status):
            ended.append(Exit(pid, None, os.WTERMSIG(status)))
        else:
            ended.append(Exit(pid, os.waitstatus_to_exitcode(status), None))
    return ended


def send(pid: int, signum: int) -> bool:
    """Send ``signum`` to ``pid``; return False if it is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def set_title(text: str) -> None:
    setproctitle.setproctitle(text)


def rss_mb(pid: int) -> float:
    """Return the resident memory of ``pid`` in MiB, or 0 if gone."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1048576


def sd_notify(message: str) -> bool:
    """Tell systemd ``message`` (READY=1, STATUS=..., WATCHDOG=1).

    Returns False when not started by systemd with Type=notify.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            # Never block the supervisor's loop on a full notify queue.
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
        except OSError as exc:
            log.warning("systemd notify failed error=%s", exc)
            return False
    return True


def watchdog_interval() -> float | None:
    """Return how often to send WATCHDOG=1, or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    owner = os.environ.get("WATCHDOG_PID")
    if not usec or (owner and owner != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
