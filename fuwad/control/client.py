"""Clients of the control socket, for fuwactl (sync) and the HTTP API (async).

Each request opens its own connection, sends one line, reads one answer and
closes: the daemon keeps no state per client, and a client never holds a
socket the daemon would have to time out.  ``request`` returns the answer's
``data`` or raises:

- :class:`~fuwad.errors.DaemonNotRunning` when nothing listens on the socket;
- :class:`~fuwad.errors.ControlError` when the daemon answers with an error
  (its message is the daemon's) or refuses this user;
- :class:`~fuwad.errors.ControlTimeout` when no answer comes in time;
- :class:`~fuwad.errors.ProtocolError` when the answer is not one.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path
from typing import Any

from fuwad.config import Config
from fuwad.control.protocol import (
    MAX_ANSWER_BYTES,
    Answer,
    LineReader,
    LineTooLong,
    decode_answer,
    encode_request,
)
from fuwad.errors import (
    ControlError,
    ControlTimeout,
    DaemonNotRunning,
    ProtocolError,
)

__all__ = ["AsyncControlClient", "ControlClient"]

RECV_BYTES = 65536


def not_running(path: Path, reason: str) -> DaemonNotRunning:
    """Return the error for a socket nothing answers on."""
    return DaemonNotRunning(
        f"the fuwad daemon is not running: {reason} at {path}; start it "
        "with 'fuwad run' (or pass the --config it runs with)"
    )


def _connect_error(path: Path, exc: OSError) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return not_running(path, "no control socket")
    if isinstance(exc, ConnectionRefusedError):
        return not_running(path, "nothing listens on the control socket")
    if isinstance(exc, PermissionError):
        return ControlError(
            f"permission denied on the control socket {path}; run as the "
            "daemon's user, as root or as a member of its [control] group"
        )
    return not_running(path, f"cannot connect ({exc.strerror or exc})")


def _timeout(path: Path, cmd: str, timeout: float) -> ControlTimeout:
    return ControlTimeout(
        f"the daemon did not answer {cmd!r} within {timeout:g}s on {path}; "
        "it may be busy or stuck: check its log, or raise "
        "[control] client_timeout"
    )


def _result(answer: Answer, request_id: int) -> Any:
    if not answer.ok:
        raise ControlError(answer.error)
    if answer.id != request_id:
        raise ProtocolError(
            f"the daemon answered request {answer.id!r} instead of "
            f"{request_id}; use fuwactl and fuwad from the same release"
        )
    return answer.data


def _closed_early(path: Path) -> ProtocolError:
    return ProtocolError(
        f"the daemon closed the control connection on {path} without an "
        "answer; check its log"
    )


class ControlClient:
    """A blocking client, for fuwactl and scripts."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)

    @classmethod
    def from_config(cls, config: Config) -> ControlClient:
        return cls(config.socket_path(), config.control.client_timeout)

    def request(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its answer's data."""
        request_id = next(self._ids)
        line = encode_request(request_id, cmd, args)
        deadline = time.monotonic() + self.timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except TimeoutError:
                raise _timeout(self.path, cmd, self.timeout) from None
            except OSError as exc:
                raise _connect_error(self.path, exc) from None
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused at once: the refusal is waiting to be read
            except TimeoutError:
                raise _timeout(self.path, cmd, self.timeout) from None
            answer = self._read_answer(sock, deadline, cmd)
        return _result(decode_answer(answer), request_id)

    def _read_answer(self, sock: socket.socket, deadline: float,
                     cmd: str) -> bytes:
        reader = LineReader(MAX_ANSWER_BYTES)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(self.path, cmd, self.timeout)
            sock.settimeout(remaining)
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                raise _timeout(self.path, cmd, self.timeout) from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise _closed_early(self.path)
            try:
                lines = reader.feed(data)
            except LineTooLong as exc:
                raise ProtocolError(f"the daemon's answer: {exc}") from None
            if lines:
                return lines[0]


class AsyncControlClient:
    """An asyncio client, for the HTTP API."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)

    @classmethod
    def from_config(cls, config: Config) -> AsyncControlClient:
        return cls(config.socket_path(), config.control.client_timeout)

    async def request(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its answer's data."""
        request_id = next(self._ids)
        line = encode_request(request_id, cmd, args)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._exchange(line)
        except TimeoutError:
            raise _timeout(self.path, cmd, self.timeout) from None
        return _result(decode_answer(answer), request_id)

    async def _exchange(self, line: bytes) -> bytes:
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.path), limit=MAX_ANSWER_BYTES
            )
        except OSError as exc:
            raise _connect_error(self.path, exc) from None
        try:
            writer.write(line)
            try:
                await writer.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused at once: the refusal is waiting to be read
            try:
                answer = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise _closed_early(self.path) from None
            except asyncio.LimitOverrunError:
                raise ProtocolError(
                    "the daemon's answer is longer than "
                    f"{MAX_ANSWER_BYTES} bytes"
                ) from None
            except ConnectionResetError:
                raise _closed_early(self.path) from None
            return answer[:-1]
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
