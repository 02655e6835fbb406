"""The control protocol's framing: JSON lines, with no I/O.

Each request and each answer is one JSON object on one line, ended by
``\\n``.  A request is ``{"v": 1, "id": <id>, "cmd": <name>, "args": {...}}``;
an answer repeats the id and is either ``{"v": 1, "id": ..., "ok": true,
"data": ...}`` or ``{"v": 1, "id": ..., "ok": false, "error": <message>}``.
The request id is the client's own (a number or a short string) and only
pairs answers with requests.  Lines longer than the caller's cap are refused
before they are parsed, so a peer cannot make the reader hold an unbounded
buffer.  The server (:mod:`fuwad.control.server`) and the clients
(:mod:`fuwad.control.client`) own the sockets; this module owns the bytes.
"""

from __future__ import annotations

import datetime
import enum
import json
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from fuwad.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 65536  # the server's default cap on one request line
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # the clients' cap on one answer line
MAX_ID_CHARS = 128

RequestId = int | str | None


class LineTooLong(ProtocolError):
    """A line grew past the cap before its newline arrived."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"line is longer than {limit} bytes; send one JSON object per "
            "line and keep it under the limit"
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    id: RequestId
    ok: bool
    data: Any = None
    error: str = ""


class LineReader:
    """Split a byte stream into lines of at most ``max_line`` bytes.

    ``feed`` returns every line the new bytes complete, without the newline.
    Once it has raised :class:`LineTooLong` the stream has no trustworthy
    boundary left, so the reader refuses all further input.
    """

    __slots__ = ("_buffer", "_max_line", "_scanned", "_broken")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._buffer = bytearray()
        self._max_line = max_line
        self._scanned = 0  # bytes of _buffer known to hold no newline
        self._broken = False

    @property
    def pending(self) -> int:
        """Return how many bytes of an unfinished line are held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise LineTooLong(self._max_line)
        self._buffer += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            if end - start > self._max_line:
                self._fail()
            lines.append(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        if len(self._buffer) > self._max_line:
            self._fail()
        return lines

    def _fail(self) -> None:
        self._broken = True
        self._buffer.clear()
        self._scanned = 0
        raise LineTooLong(self._max_line)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_object(line: bytes, what: str) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0][:120]
        raise ProtocolError(f"{what} is not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _check_version(message: dict[str, Any], what: str) -> None:
    version = message.get("v")
    if version == PROTOCOL_VERSION and type(version) is int:
        return
    if "v" not in message:
        raise ProtocolError(
            f"{what} has no protocol version; add \"v\": {PROTOCOL_VERSION}"
        )
    raise ProtocolError(
        f"{what} speaks protocol version {version!r}, this side speaks "
        f"{PROTOCOL_VERSION}; use fuwactl and fuwad from the same release"
    )


def _check_id(value: Any, what: str) -> RequestId:
    if value is None:
        return None
    if type(value) is int:
        return int(value)
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    raise ProtocolError(
        f"{what} id must be a number or a string of at most "
        f"{MAX_ID_CHARS} characters"
    )


def decode_request(line: bytes) -> Request:
    """Parse one request line (without its newline)."""
    message = _parse_object(line, "request")
    _check_version(message, "request")
    request_id = _check_id(message.get("id"), "request")
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError('request needs "cmd", the command name as a string')
    args = message.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError('request "args" must be a JSON object')
    return Request(id=request_id, cmd=cmd, args=args)


def decode_answer(line: bytes) -> Answer:
    """Parse one answer line (without its newline)."""
    message = _parse_object(line, "answer")
    _check_version(message, "answer")
    answer_id = _check_id(message.get("id"), "answer")
    ok = message.get("ok")
    if ok is True:
        return Answer(id=answer_id, ok=True, data=message.get("data"))
    if ok is False:
        error = message.get("error")
        if not isinstance(error, str) or not error:
            raise ProtocolError("error answer carries no error message")
        return Answer(id=answer_id, ok=False, error=error)
    raise ProtocolError('answer needs "ok": true or false')


def _plain(value: Any) -> Any:
    """Turn the few non-JSON types status data may hold into JSON values."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _dump(message: dict[str, Any]) -> bytes:
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_plain)
    return text.encode("utf-8") + b"\n"


def encode_request(request_id: RequestId, cmd: str,
                   args: dict[str, Any] | None = None) -> bytes:
    """Return one request line, newline included."""
    return _dump({"v": PROTOCOL_VERSION, "id": request_id, "cmd": cmd,
                  "args": args or {}})


def encode_ok(request_id: RequestId, data: Any) -> bytes:
    """Return one success answer line; TypeError or ValueError if not JSON."""
    return _dump({"v": PROTOCOL_VERSION, "id": request_id, "ok": True,
                  "data": data})


def encode_error(request_id: RequestId, error: str) -> bytes:
    """Return one error answer line."""
    return _dump({"v": PROTOCOL_VERSION, "id": request_id, "ok": False,
                  "error": error})
