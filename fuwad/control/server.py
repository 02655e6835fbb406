"""The control socket's server: a Unix socket inside the supervisor's loop.

The supervisor is one thread running a ``selectors`` loop that forks
workers, so this server has no threads and no asyncio: every socket is
non-blocking, reads and writes are buffered, and nothing here waits.  Each
registered file's ``data`` is a callable ``(fileobj, mask)`` that the loop
calls when the file is ready; :meth:`ControlServer.tick` times out idle and
slow clients and must run at least once a second.

Access is checked twice: the socket file is mode 0660 (its group set by
``[control] group``), and each peer's credentials (``SO_PEERCRED``) must be
root, the daemon's own user, or a member of that group.  Framing lives in
:mod:`fuwad.control.protocol`, the commands in :mod:`fuwad.control.commands`.

Group membership is looked up (through NSS) for each connecting peer that is
neither root nor the daemon's user; a slow directory service slows the loop.
"""

from __future__ import annotations

import errno
import functools
import grp
import logging
import os
import pwd
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuwad.control import commands
from fuwad.control.commands import CommandTarget
from fuwad.control.protocol import (
    LineReader,
    LineTooLong,
    Request,
    decode_request,
    encode_error,
    encode_ok,
)
from fuwad.errors import (
    ControlError,
    DaemonAlreadyRunning,
    FuwadError,
    ProtocolError,
)

__all__ = ["CommandTarget", "ControlServer", "Peer", "admitted"]

log = logging.getLogger("fuwad.control")

SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o750
MAX_PATH_BYTES = 107  # sun_path holds 108 bytes with the closing NUL
BACKLOG = 128
MAX_CLIENTS = 256  # each costs a file descriptor in the supervisor
ACCEPT_BATCH = 64  # accepts per wakeup, so a flood cannot starve the loop
ACCEPT_PAUSE_S = 1.0  # after running out of file descriptors
RECV_BYTES = 65536
MAX_PENDING_OUTPUT = 1024 * 1024  # stop reading a client that does not read
PROBE_TIMEOUT_S = 1.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    """Return the credentials of the process on the other end of ``sock``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid=pid, uid=uid, gid=gid)


def admitted(peer: Peer, own_uid: int, group: grp.struct_group | None,
             user: pwd.struct_passwd | None,
             process_groups: frozenset[int] = frozenset()) -> bool:
    """Decide whether ``peer`` may use the socket.

    Root and the daemon's own user always may; with a configured ``group``,
    so may a process whose effective group it is, a process that holds it
    among its supplementary groups (``process_groups``, as systemd's
    SupplementaryGroups= grants), and a user who has it as primary or
    supplementary group in the group database.
    """
    if peer.uid in (0, own_uid):
        return True
    if group is None:
        return False
    if peer.gid == group.gr_gid or group.gr_gid in process_groups:
        return True
    if user is None:
        return False
    return user.pw_gid == group.gr_gid or user.pw_name in group.gr_mem


def groups_of(pid: int) -> frozenset[int]:
    """Return the supplementary groups process ``pid`` holds now."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return frozenset()


def resolve_group(name: str) -> grp.struct_group | None:
    """Return the configured group, or None when none is set."""
    if not name:
        return None
    try:
        if name.isdigit():
            return grp.getgrgid(int(name))
        return grp.getgrnam(name)
    except KeyError:
        raise ControlError(
            f"[control] group {name!r} does not exist; create it or leave "
            "[control] group empty"
        ) from None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class _Connection:
    """One client: its socket, buffers and deadline."""

    __slots__ = ("sock", "peer", "reader", "out", "deadline", "done",
                 "events", "closed", "callback")

    def __init__(self, sock: socket.socket, peer: Peer, reader: LineReader,
                 deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.reader = reader
        self.out = bytearray()
        self.deadline = deadline  # monotonic; reset by each bit of progress
        self.done = False  # no more requests will be read
        self.events = selectors.EVENT_READ
        self.closed = False
        self.callback: Callable[[Any, int], None] = lambda f, m: None


class ControlServer:
    """Serve control commands on a Unix socket, inside a selectors loop."""

    def __init__(
        self,
        path: Path,
        *,
        group: str,
        target: CommandTarget,
        selector: selectors.BaseSelector,
        clock: Callable[[], float] = time.monotonic,
        idle_timeout: float = 30.0,
        max_line: int = 65536,
    ) -> None:
        self.path = Path(path)
        self.group = group
        self.target = target
        self.selector = selector
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_line = max_line
        self._own_uid = os.geteuid()
        self._group_gid: int | None = None
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino)
        self._connections: dict[int, _Connection] = {}
        self._accept_resume: float | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        """Return how many clients are connected now."""
        return len(self._connections)

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Bind the socket, replacing a stale one; refuse a live one."""
        if self._listener is not None:
            raise ControlError(f"the control socket {self.path} is open")
        if len(os.fsencode(self.path)) > MAX_PATH_BYTES:
            raise ControlError(
                f"control socket path {self.path} is longer than "
                f"{MAX_PATH_BYTES} bytes; set [control] socket to a shorter "
                "path"
            )
        group = resolve_group(self.group)
        self._group_gid = None if group is None else group.gr_gid
        self._make_directory()
        self._clear_stale()
        self._listener = self._bind()
        self._closed = False
        self.selector.register(self._listener, selectors.EVENT_READ,
                               self._on_accept)
        log.info("control socket listening path=%s", self.path)

    def _make_directory(self) -> None:
        parent = self.path.parent
        if parent.is_dir():
            return
        try:
            parent.mkdir(parents=True, mode=DIRECTORY_MODE)
            os.chmod(parent, DIRECTORY_MODE)  # mkdir's mode obeys the umask
            if self._group_gid is not None:
                os.chown(parent, -1, self._group_gid)
        except OSError as exc:
            raise ControlError(
                f"cannot create the control socket's directory {parent}: "
                f"{exc.strerror}; create it or set [control] socket"
            ) from None

    def _clear_stale(self) -> None:
        """Remove a socket file no daemon listens on any more."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(
                f"{self.path} exists and is not a socket; remove it or set "
                "[control] socket to another path"
            )
        holder = self._probe()
        if holder is not None:
            raise DaemonAlreadyRunning(
                f"a fuwad daemon (pid {holder}) already listens on "
                f"{self.path}; stop it with 'fuwactl shutdown' or give this "
                "one another [control] socket"
            )
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(
                f"cannot remove the stale control socket {self.path}: "
                f"{exc.strerror}"
            ) from None
        log.warning("control socket stale, replaced path=%s", self.path)

    def _probe(self) -> int | None:
        """Return the pid of a live daemon on the socket, or None if stale."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(self.path))
            pid = peer_of(probe).pid
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except (TimeoutError, BlockingIOError):
            # Its backlog is full: something listens and is busy.
            return 0
        except OSError as exc:
            raise ControlError(
                f"cannot check the control socket {self.path}: "
                f"{exc.strerror}; run as the daemon's user or remove it"
            ) from None
        finally:
            probe.close()
        # A worker that outlived its supervisor can hold the listening
        # socket open; nobody accepts there, so the socket counts as stale.
        if pid > 0 and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
        return pid

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask keeps the file owner-only from the moment bind creates
        # it until it has its group and final mode: no one slips in between.
        # The supervisor is single-threaded, so the process-wide umask is ours.
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise ControlError(
                f"cannot bind the control socket {self.path}: {exc.strerror}"
            ) from None
        finally:
            os.umask(old_umask)
        try:
            info = os.stat(self.path)
            self._identity = (info.st_dev, info.st_ino)
            if self._group_gid is not None:
                os.chown(self.path, -1, self._group_gid)
            os.chmod(self.path, SOCKET_MODE)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self._unlink()
            raise ControlError(
                f"cannot set up the control socket {self.path}: "
                f"{exc.strerror}; check that the daemon's user may use "
                f"group {self.group!r}"
            ) from None
        return sock

    def close(self) -> None:
        """Close every connection, stop listening and remove the socket."""
        for conn in list(self._connections.values()):
            self._send_once(conn, bytes(conn.out))
            self._drop(conn)
        if self._listener is not None:
            if self._accept_resume is None:
                self.selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            self._unlink()
            log.info("control socket closed path=%s", self.path)
        self._accept_resume = None
        self._closed = True

    def close_after_fork(self) -> None:
        """In a forked child: close the inherited sockets, nothing more.

        The child shares the parent's epoll set and socket file, so it must
        neither unregister anything nor remove the file.
        """
        for conn in self._connections.values():
            conn.sock.close()
            conn.closed = True
        self._connections.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._closed = True

    def _unlink(self) -> None:
        # Remove only the file we bound: a newer daemon may own the path.
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("control socket not removed path=%s: %s",
                        self.path, exc.strerror)

    # -- timeouts ----------------------------------------------------------

    def tick(self) -> None:
        """Time out idle and slow clients; resume accepting after a pause."""
        now = self.clock()
        if (self._accept_resume is not None and now >= self._accept_resume
                and self._listener is not None):
            self._accept_resume = None
            self.selector.register(self._listener, selectors.EVENT_READ,
                                   self._on_accept)
        for conn in list(self._connections.values()):
            if now < conn.deadline:
                continue
            if conn.reader.pending:
                self._send_once(conn, encode_error(
                    None,
                    f"request not finished within {self.idle_timeout:g}s; "
                    "send a whole line at once",
                ))
            log.debug("control client timed out pid=%d", conn.peer.pid)
            self._drop(conn)

    # -- accepting ---------------------------------------------------------

    def _on_accept(self, fileobj: Any, mask: int) -> None:
        listener = self._listener
        for _ in range(ACCEPT_BATCH):
            if listener is None or self._accept_resume is not None:
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                 errno.ENOMEM):
                    # The listener stays readable; without a pause the loop
                    # would spin on it until a descriptor is free.
                    log.error("control accept failed, pausing: %s",
                              exc.strerror)
                    self.selector.unregister(listener)
                    self._accept_resume = self.clock() + ACCEPT_PAUSE_S
                    return
                log.warning("control accept failed: %s", exc.strerror)
                continue
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            peer = peer_of(sock)
        except OSError:
            sock.close()
            return
        if not self._admits(peer):
            log.warning("control client refused uid=%d gid=%d pid=%d",
                        peer.uid, peer.gid, peer.pid)
            self._refuse(sock, self._refusal(peer))
            return
        if len(self._connections) >= MAX_CLIENTS:
            log.warning("control client refused, too many open count=%d",
                        len(self._connections))
            self._refuse(sock, f"the daemon already serves {MAX_CLIENTS} "
                               "control connections; try again shortly")
            return
        conn = _Connection(sock, peer, LineReader(self.max_line),
                           self.clock() + self.idle_timeout)
        conn.callback = functools.partial(self._on_client, conn)
        self._connections[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn.callback)
        log.debug("control client connected pid=%d uid=%d",
                  peer.pid, peer.uid)

    def _admits(self, peer: Peer) -> bool:
        if peer.uid in (0, self._own_uid):
            return True
        if self._group_gid is None:
            return False
        # Looked up per connection, so a user added to the group is let in
        # without a restart.
        try:
            group: grp.struct_group | None = grp.getgrgid(self._group_gid)
        except KeyError:
            group = None
        try:
            user: pwd.struct_passwd | None = pwd.getpwuid(peer.uid)
        except KeyError:
            user = None
        return admitted(peer, self._own_uid, group, user,
                        groups_of(peer.pid))

    def _refusal(self, peer: Peer) -> str:
        who = _user_name(peer.uid)
        owner = _user_name(self._own_uid)
        allowed = "as root" if owner == "root" else f"as {owner} or root"
        if self.group:
            allowed += f", or as a member of group {self.group!r}"
        return (f"{who} may not use the control socket {self.path}; run "
                f"fuwactl {allowed}")

    @staticmethod
    def _refuse(sock: socket.socket, message: str) -> None:
        try:
            sock.send(encode_error(None, message))
        except OSError:
            pass
        sock.close()

    # -- serving -----------------------------------------------------------

    def _on_client(self, conn: _Connection, fileobj: Any, mask: int) -> None:
        if conn.closed:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and not conn.closed and not conn.done:
            self._read(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:  # the client has sent all it will send
            conn.done = True
            self._flush(conn)
            return
        try:
            lines = conn.reader.feed(data)
        except LineTooLong as exc:
            log.info("control request refused pid=%d: line over %d bytes",
                     conn.peer.pid, self.max_line)
            self._end_with_error(conn, None, f"request {exc}")
            return
        for line in lines:
            if not line.strip():
                continue  # a blank line is harmless; people type them
            conn.deadline = self.clock() + self.idle_timeout
            try:
                request = decode_request(line)
            except ProtocolError as exc:
                log.info("control request refused pid=%d: %s",
                         conn.peer.pid, exc)
                self._end_with_error(conn, None, str(exc))
                return
            conn.out += self._answer(request, conn.peer)
            if self._closed or conn.closed:
                return  # the command closed the server (shutdown)
        self._flush(conn)

    def _answer(self, request: Request, peer: Peer) -> bytes:
        log.debug("control command cmd=%s id=%s pid=%d",
                  request.cmd, request.id, peer.pid)
        try:
            data = commands.run(self.target, request.cmd, request.args)
            return encode_ok(request.id, data)
        except FuwadError as exc:
            log.info("control command refused cmd=%s pid=%d: %s",
                     request.cmd, peer.pid, exc)
            return encode_error(request.id, str(exc) or type(exc).__name__)
        except Exception as exc:
            # The boundary: a broken command must not take the daemon down.
            log.exception("control command failed cmd=%s", request.cmd)
            return encode_error(
                request.id,
                f"the daemon failed to run {request.cmd!r} "
                f"({type(exc).__name__}); its log has the details",
            )

    def _end_with_error(self, conn: _Connection, request_id: Any,
                        message: str) -> None:
        conn.out += encode_error(request_id, message)
        conn.done = True
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(conn)
                return
            del conn.out[:sent]
            if not conn.out:
                conn.deadline = self.clock() + self.idle_timeout
        if conn.done and not conn.out:
            self._drop(conn)
            return
        events = selectors.EVENT_WRITE if conn.out else 0
        if not conn.done and len(conn.out) < MAX_PENDING_OUTPUT:
            events |= selectors.EVENT_READ
        if events != conn.events:
            self.selector.modify(conn.sock, events, conn.callback)
            conn.events = events

    @staticmethod
    def _send_once(conn: _Connection, data: bytes) -> None:
        if not data or conn.closed:
            return
        try:
            conn.sock.send(data)
        except OSError:
            pass

    def _drop(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._connections.pop(conn.sock.fileno(), None)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
