"""The example handlers, called directly on real files in a temp directory."""

from __future__ import annotations

import email
import email.policy
import hashlib
import inspect
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from fuwad import JobHandler, examples
from fuwad.examples import (
    BadJobData,
    ChecksumReport,
    CountPrimes,
    EmailToOutbox,
    FailOnPurpose,
    IntendedFailure,
    Sleep,
)
from fuwad.handler import Job, resolve


def make_job(job_class: type[JobHandler], data: Any = None,
             **fields: Any) -> Job:
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = dict(
        id=41, job_name="example", job_class=f"fuwad.examples."
        f"{job_class.__name__}", job_data=data, queue="default", priority=5,
        status="processing", attempts=1, max_attempts=None, delay=0,
        available_at=now, created_at=now, started_at=now, completed_at=None,
        failed_at=None, last_error=None, worker_id="test", leased_at=now,
    )
    values.update(fields)
    return Job(**values)


def run(handler: type[JobHandler], data: Any, **fields: Any) -> Any:
    return handler().handle(data, make_job(handler, data, **fields))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["ChecksumReport", "FailOnPurpose",
                                  "Sleep", "CountPrimes", "EmailToOutbox"])
def test_every_example_resolves_by_its_dotted_path(name: str) -> None:
    assert resolve(f"fuwad.examples.{name}") is getattr(examples, name)


# ChecksumReport -------------------------------------------------------------


def test_checksum_report_lists_every_file_and_sha256sum_agrees(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "uploads"
    (tree / "a" / "b").mkdir(parents=True)
    files = {"z.txt": b"last\n", "a/one.bin": bytes(range(256)) * 4000,
             "a/b/empty": b"", "a/b/ünï cödé.txt": "hé".encode()}
    for name, content in files.items():
        (tree / name).write_bytes(content)

    result = run(ChecksumReport, {"path": str(tree)})

    report = tree / "SHA256SUMS"
    assert result == {"files": 4, "report": str(report),
                      "bytes": sum(len(c) for c in files.values())}
    expected = sorted(f"{sha256(c)}  {n}" for n, c in files.items())
    assert sorted(report.read_text().splitlines()) == expected
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"],
                           cwd=tree, capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_checksum_report_leaves_out_itself_on_a_second_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    first = run(ChecksumReport, {"path": str(tmp_path)})
    second = run(ChecksumReport, {"path": str(tmp_path)})
    assert first["files"] == second["files"] == 1
    assert "SHA256SUMS" not in (tmp_path / "SHA256SUMS").read_text()


def test_checksum_report_skips_links_and_writes_where_asked(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "real").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not to be read")
    (tree / "link-to-file").symlink_to(outside / "secret")
    (tree / "link-to-dir").symlink_to(outside)
    target = tmp_path / "reports" / "tree.sha256"
    target.parent.mkdir()

    result = run(ChecksumReport, {"path": str(tree), "report": str(target)})

    assert result["files"] == 1
    assert target.read_text() == f"{sha256(b'x')}  real\n"
    assert not (tree / "SHA256SUMS").exists()
    assert [p.name for p in target.parent.iterdir()] == ["tree.sha256"]


def test_checksum_report_escapes_a_newline_in_a_name_as_sha256sum_does(
    tmp_path: Path,
) -> None:
    (tmp_path / "two\nlines").write_bytes(b"odd")
    (tmp_path / "back\\slash").write_bytes(b"odder")
    run(ChecksumReport, {"path": str(tmp_path)})
    lines = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert f"\\{sha256(b'odd')}  two\\nlines" in lines
    check = subprocess.run(["sha256sum", "--check", "SHA256SUMS"],
                           cwd=tmp_path, capture_output=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "JSON object, not list"),
    ({}, "'path' must be an absolute directory path"),
    ({"path": "relative/dir"}, "absolute directory path"),
    ({"path": 7}, "absolute directory path"),
    ({"path": "/nonexistent/fuwad-test"}, "not an existing directory"),
])
def test_checksum_report_refuses_data_it_cannot_use(
    data: Any, message: str,
) -> None:
    with pytest.raises(BadJobData, match=message):
        run(ChecksumReport, data)


def test_checksum_report_refuses_a_report_in_a_missing_directory(
    tmp_path: Path,
) -> None:
    with pytest.raises(BadJobData, match="directory of 'report'"):
        run(ChecksumReport, {"path": str(tmp_path),
                             "report": str(tmp_path / "no" / "sums")})


@pytest.fixture
def unprivileged_tree() -> Iterator[Path]:
    """A directory that the user "nobody" owns when tests run as root."""
    tree = Path(tempfile.mkdtemp(prefix="fuwad-examples-"))
    try:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(tree, nobody.pw_uid, nobody.pw_gid)
        yield tree
    finally:
        for path in tree.rglob("*"):
            path.chmod(0o700)
        shutil.rmtree(tree)


def run_checksums_as_worker(tree: Path) -> str:
    """Run ChecksumReport in a child without root's power to read all.

    Root reads any file, so a child process drops to "nobody" first and
    meets the permission errors an ordinary worker user would.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        outcome = "child crashed"
        try:
            os.close(read)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            try:
                run(ChecksumReport, {"path": str(tree)})
                outcome = "completed"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write, outcome.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text


@pytest.mark.parametrize("blocked", ["file", "directory"])
def test_checksum_report_fails_naming_what_it_cannot_read(
    unprivileged_tree: Path, blocked: str,
) -> None:
    (unprivileged_tree / "fine.txt").write_bytes(b"ok")
    locked = unprivileged_tree / "locked"
    if blocked == "file":
        locked.write_bytes(b"x")
    else:
        locked.mkdir()
        (locked / "inside").write_bytes(b"x")
    locked.chmod(0)

    outcome = run_checksums_as_worker(unprivileged_tree)

    assert outcome.startswith("PermissionError:"), outcome
    assert str(locked) in outcome
    assert not (unprivileged_tree / "SHA256SUMS").exists()


# FailOnPurpose --------------------------------------------------------------


def test_fail_on_purpose_raises_every_time_naming_the_attempt() -> None:
    with pytest.raises(IntendedFailure,
                       match="attempt 2: this job fails on purpose"):
        run(FailOnPurpose, None, attempts=2)
    with pytest.raises(IntendedFailure, match="^attempt 1: disk on fire$"):
        run(FailOnPurpose, {"message": "disk on fire"})
    assert FailOnPurpose.max_attempts == 3


# Sleep ----------------------------------------------------------------------


async def test_sleep_is_async_and_returns_what_it_slept() -> None:
    assert inspect.iscoroutinefunction(Sleep.handle)
    assert await run(Sleep, {"seconds": 0.01}) == {"slept": 0.01}


@pytest.mark.parametrize("seconds", [-1, "5", True, 10**9, float("nan")])
async def test_sleep_refuses_a_bad_duration(seconds: Any) -> None:
    with pytest.raises(BadJobData, match="'seconds' must be a number"):
        await run(Sleep, {"seconds": seconds})


# CountPrimes ----------------------------------------------------------------


@pytest.mark.parametrize(("below", "primes"), [
    (2, 0), (3, 1), (10, 4), (100, 25), (7919, 999), (7920, 1000),
    (1_000_000, 78498),
])
def test_count_primes_counts_primes_below_the_limit(
    below: int, primes: int,
) -> None:
    assert run(CountPrimes, {"below": below}) == {"below": below,
                                                  "primes": primes}


def test_count_primes_is_a_plain_method_and_refuses_huge_limits() -> None:
    assert not inspect.iscoroutinefunction(CountPrimes.handle)
    assert run(CountPrimes, None)["primes"] == 78498
    with pytest.raises(BadJobData, match="'below' must be a number"):
        run(CountPrimes, {"below": 10**12})


# EmailToOutbox --------------------------------------------------------------


def test_email_lands_in_the_outbox_once_per_job(tmp_path: Path) -> None:
    data = {"to": "ana@example.com", "subject": "Welcome, Ana",
            "body": "Your account is ready.\nSee you soon ✓",
            "outbox": str(tmp_path)}

    first = run(EmailToOutbox, data, id=7)
    again = run(EmailToOutbox, dict(data, subject="changed"), id=7)

    path = tmp_path / "7.eml"
    assert first == {"file": str(path), "written": True}
    assert again == {"file": str(path), "written": False}
    message = email.message_from_string(path.read_text(),
                                        policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == "Welcome, Ana"
    assert message["X-Fuwad-Job"] == "7"
    body = message.get_content()
    assert body.startswith("Your account is ready.\nSee you soon ✓")


@pytest.mark.parametrize(("change", "message"), [
    ({"subject": "hi\nBcc: all@example.com"}, "'subject' must be one line"),
    ({"to": "ana@example.com\r\nBcc: x@y"}, "'to' must be one line"),
    ({"to": "not an address"}, "'to' must be one address"),
    ({"to": ""}, "'to' must be a non-empty string"),
    ({"body": ["x"]}, "'body' must be a string"),
    ({"outbox": "outbox"}, "'outbox' must be an absolute directory"),
])
def test_email_refuses_data_that_could_forge_headers_or_is_wrong(
    tmp_path: Path, change: dict[str, Any], message: str,
) -> None:
    data = {"to": "ana@example.com", "subject": "Hi", "body": "x",
            "outbox": str(tmp_path)}
    with pytest.raises(BadJobData, match=message):
        run(EmailToOutbox, dict(data, **change))
    assert list(tmp_path.iterdir()) == []
