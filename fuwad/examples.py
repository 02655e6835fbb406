"""Example handlers: small jobs a user recognises, to try fuwad with.

Push them by their dotted path, for instance::

    fuwactl push checksums fuwad.examples.ChecksumReport \\
        --data '{"path": "/srv/uploads"}'

Each reads its settings from the job's data (a JSON object) and refuses
data it cannot use with :class:`BadJobData`, whose message says what to
send instead.  None of them runs a shell or evaluates anything from the
data; they read and write files with the worker's own permissions, so
point them only at directories the worker should touch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fuwad.errors import FuwadError
from fuwad.handler import Job, JobHandler

log = logging.getLogger("fuwad.examples")

READ_CHUNK_BYTES = 1 << 20
MAX_SLEEP_S = 86400.0
MAX_PRIMES_BELOW = 50_000_000  # the sieve takes one byte per number


class BadJobData(FuwadError, ValueError):
    """A job's data does not hold what its example handler needs."""


class IntendedFailure(FuwadError, RuntimeError):
    """Raised by :class:`FailOnPurpose`, every time."""


def _fields(data: Any, handler: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadJobData(
            f"{handler} needs its data as a JSON object, not "
            f"{type(data).__name__}"
        )
    return data


def _number(fields: Mapping[str, Any], key: str, default: float,
            low: float, high: float) -> float:
    value = fields.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high):
        raise BadJobData(
            f"{key!r} must be a number from {low:g} to {high:g}, "
            f"not {value!r}"
        )
    return float(value)


def _directory(fields: Mapping[str, Any], key: str) -> Path:
    value = fields.get(key)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise BadJobData(
            f"{key!r} must be an absolute directory path such as "
            f"/srv/uploads, not {value!r}"
        )
    path = Path(value)
    if not path.is_dir():
        raise BadJobData(f"{key!r} {value} is not an existing directory")
    return path


def _write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` so readers see the old or new whole."""
    fd, temporary = tempfile.mkstemp(dir=target.parent,
                                     prefix=f".{target.name}.", suffix=".tmp")
    try:
        # surrogateescape writes undecodable file names back byte for byte.
        with os.fdopen(fd, "w", encoding="utf-8",
                       errors="surrogateescape") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ChecksumReport(JobHandler):
    """Write the SHA-256 of every file under a directory to a report.

    Data: ``path`` (an absolute directory) and optionally ``report`` (an
    absolute file path, default ``<path>/SHA256SUMS``).  The report has
    the layout of ``sha256sum``, so ``cd <path> && sha256sum -c
    SHA256SUMS`` checks it.  Symbolic links are not followed, and the
    report itself is left out.  Returns the file count, bytes read and
    the report's path.
    """

    def handle(self, data: Any, job: Job) -> dict[str, Any]:
        fields = _fields(data, "ChecksumReport")
        root = _directory(fields, "path")
        report = self._report_path(fields, root)
        skip = report.resolve()
        lines = []
        total = 0
        for path in _files(root):
            if path.resolve() == skip:
                continue
            digest, size = _sha256(path)
            total += size
            lines.append(_sum_line(digest, path.relative_to(root)))
        _write_atomically(report, "".join(lines))
        log.info("checksum report written job=%d files=%d", job.id,
                 len(lines))
        return {"files": len(lines), "bytes": total, "report": str(report)}

    @staticmethod
    def _report_path(fields: Mapping[str, Any], root: Path) -> Path:
        value = fields.get("report")
        if value is None:
            return root / "SHA256SUMS"
        if not isinstance(value, str) or not os.path.isabs(value):
            raise BadJobData(
                f"'report' must be an absolute file path, not {value!r}"
            )
        path = Path(value)
        if not path.parent.is_dir():
            raise BadJobData(f"the directory of 'report' {value} is missing")
        return path


def _files(root: Path) -> Iterator[Path]:
    """Yield the regular files under ``root`` in a stable order."""
    for directory, subdirectories, names in os.walk(root, onerror=_raise):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


def _raise(error: OSError) -> None:
    # os.walk skips a directory it cannot list unless told otherwise; a
    # report that silently leaves files out would be worse than none.
    raise error


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _sum_line(digest: str, relative: Path) -> str:
    name = str(relative)
    if "\\" in name or "\n" in name or "\r" in name:
        # sha256sum's convention: a leading backslash marks an escaped name.
        name = (name.replace("\\", "\\\\").replace("\n", "\\n")
                .replace("\r", "\\r"))
        return f"\\{digest}  {name}\n"
    return f"{digest}  {name}\n"


class FailOnPurpose(JobHandler):
    """Raise on every attempt, to show retries, backoff and ``last_error``.

    Data: optionally ``message``, the error text to raise.  After
    ``max_attempts`` attempts the job ends ``failed``.
    """

    max_attempts = 3
    retry_delay = 2.0
    retry_delay_max = 10.0

    def handle(self, data: Any, job: Job) -> None:
        fields = _fields(data, "FailOnPurpose")
        message = fields.get("message")
        if not isinstance(message, str) or not message.strip():
            message = ("this job fails on purpose to show retries; see its "
                       "attempts and last error with 'fuwactl show "
                       f"{job.id}'")
        raise IntendedFailure(f"attempt {job.attempts}: {message}")


class Sleep(JobHandler):
    """Wait ``seconds`` (default 5) on the event loop, then finish.

    A slow job without load, to watch concurrency, timeouts and a
    graceful stop.  Returns the seconds slept.
    """

    async def handle(self, data: Any, job: Job) -> dict[str, float]:
        fields = _fields(data, "Sleep")
        seconds = _number(fields, "seconds", 5.0, 0.0, MAX_SLEEP_S)
        await asyncio.sleep(seconds)
        return {"slept": seconds}


class CountPrimes(JobHandler):
    """Count the primes below ``below`` (default 1,000,000) with a sieve.

    Plain CPU work in a plain method, so the worker runs it in a thread.
    Returns the limit and the count.
    """

    def handle(self, data: Any, job: Job) -> dict[str, int]:
        fields = _fields(data, "CountPrimes")
        below = int(_number(fields, "below", 1_000_000, 2, MAX_PRIMES_BELOW))
        return {"below": below, "primes": count_primes(below)}


def count_primes(below: int) -> int:
    """Return how many primes are smaller than ``below``."""
    if below < 3:
        return 0
    sieve = bytearray([1]) * below
    sieve[0] = sieve[1] = 0
    for n in range(2, math.isqrt(below - 1) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, below, n)))
    return sum(sieve)


class EmailToOutbox(JobHandler):
    """Write an email to a directory instead of sending it over SMTP.

    Data: ``to``, ``subject``, ``body`` and ``outbox`` (an absolute
    directory).  The message lands in ``<outbox>/<job id>.eml``; a file
    already there means an earlier attempt delivered it, so the job does
    nothing twice.  That is how a handler copes with at-least-once
    delivery: the job id is its idempotency key.
    """

    def handle(self, data: Any, job: Job) -> dict[str, Any]:
        fields = _fields(data, "EmailToOutbox")
        outbox = _directory(fields, "outbox")
        to = self._header(fields, "to")
        if "@" not in to or any(c.isspace() for c in to):
            raise BadJobData(f"'to' must be one address such as "
                             f"ana@example.com, not {to!r}")
        subject = self._header(fields, "subject")
        body = fields.get("body", "")
        if not isinstance(body, str):
            raise BadJobData("'body' must be a string")
        target = outbox / f"{job.id}.eml"
        if target.exists():
            log.info("email already in outbox job=%d", job.id)
            return {"file": str(target), "written": False}
        message = EmailMessage()
        message["From"] = "fuwad@localhost"
        message["To"] = to
        message["Subject"] = subject
        message["X-Fuwad-Job"] = str(job.id)
        message.set_content(body)
        _write_atomically(target, message.as_string())
        log.info("email written to outbox job=%d", job.id)
        return {"file": str(target), "written": True}

    @staticmethod
    def _header(fields: Mapping[str, Any], key: str) -> str:
        value = fields.get(key)
        if not isinstance(value, str) or not value.strip():
            raise BadJobData(f"{key!r} must be a non-empty string")
        if any(c in value for c in "\r\n\x00"):
            # A line break in a header would let the data add headers.
            raise BadJobData(f"{key!r} must be one line")
        return value.strip()


class Noop(JobHandler):
    """Does nothing at all: what benchmarks push to time the queue itself."""

    async def handle(self, data: Any, job: Job) -> None:
        return None
