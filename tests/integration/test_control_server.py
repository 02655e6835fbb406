"""The control server on a real Unix socket, driven by a real selectors loop.

``Served`` runs a :class:`ControlServer` the way the supervisor does: one
thread, one selector, ``key.data(key.fileobj, mask)`` for each ready file
and ``tick()`` on every pass.  ``Target`` is a small in-test
CommandTarget that records what it was asked.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import selectors
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fuwad.control.client import AsyncControlClient, ControlClient
from fuwad.control.protocol import decode_answer, encode_request
from fuwad.control.server import ControlServer
from fuwad.errors import (
    ControlError,
    ControlTimeout,
    DaemonAlreadyRunning,
    DaemonNotRunning,
    ProtocolError,
)
from tests.conftest import wait_until_sync
from tests.control_harness import TIMEOUT, Served, Target, ping_as


def raw_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(path))
    return sock


def read_line(sock: socket.socket) -> bytes:
    """Read one line; b"" if the server closed first."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# -- commands --------------------------------------------------------------


def test_every_command_is_answered_through_the_client(served: Served) -> None:
    client = served.client()
    ping = client.request("ping")
    assert ping["pong"] is True and ping["pid"] == os.getpid()
    status = client.request("status")
    assert status["totals"] == {"completed": 5, "failed": 1}
    assert [w["pid"] for w in client.request("workers")] == [1000, 1001]
    assert client.request("scale", count=3) == {"workers": 3}
    assert client.request("monitor.stop") == {"running": False}
    assert client.request("monitor.running") == {"running": False}
    assert client.request("monitor.start") == {"running": True}
    assert client.request("reload") == {"reloading": True}
    assert client.request("shutdown", graceful_timeout=1.5)["stopping"]
    assert client.request("cancel", job_id=42)["stopping"] is True
    assert client.request("cancel", job_id=43)["stopping"] is False
    assert client.request("log-level", level="debug") == {"level": "DEBUG"}
    assert served.target.calls == [
        ("scale", 3), ("monitor.stop", None), ("monitor.start", None),
        ("reload", None), ("shutdown", 1.5), ("cancel", 42), ("cancel", 43),
        ("log-level", "DEBUG"),
    ]


def test_error_answer_carries_the_daemons_message(served: Served) -> None:
    with pytest.raises(ControlError, match="max_workers is 8"):
        served.client().request("scale", count=9)
    with pytest.raises(ControlError, match="unknown command 'fly'"):
        served.client().request("fly")


def test_error_answer_keeps_the_connection_serving(served: Served) -> None:
    with raw_connect(served.path) as sock:
        sock.sendall(encode_request(1, "fly"))
        answer = decode_answer(read_line(sock)[:-1])
        assert (answer.id, answer.ok) == (1, False)
        sock.sendall(encode_request(2, "ping"))
        answer = decode_answer(read_line(sock)[:-1])
        assert (answer.id, answer.ok) == (2, True)


def test_failing_command_becomes_an_error_answer_logged_once(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.target.broken = True
    caplog.set_level(logging.ERROR, logger="fuwad.control")
    with pytest.raises(ControlError, match="failed to run 'status'.*log"):
        served.client().request("status")
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "status exploded" not in failures[0].getMessage()
    served.target.broken = False
    assert served.client().request("status")["pid"] == os.getpid()


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    with raw_connect(served.path) as sock:
        sock.sendall(b"".join(encode_request(i, "ping") for i in range(20)))
        ids = []
        buffer = b""
        while len(ids) < 20:
            chunk = sock.recv(65536)
            assert chunk, "server closed before answering every request"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            ids += [decode_answer(line).id for line in lines]
        assert ids == list(range(20))


def test_request_split_into_pieces_is_answered_once_whole(
    served: Served,
) -> None:
    line = encode_request("split", "monitor.running")
    with raw_connect(served.path) as sock:
        # Send a piece, then wait for another client's full round trip, so
        # the server has surely read the piece on its own.
        for i in range(0, len(line), 7):
            sock.sendall(line[i:i + 7])
            assert served.client().request("ping")["pong"]
        answer = decode_answer(read_line(sock)[:-1])
    assert (answer.id, answer.data) == ("split", {"running": True})


# -- many clients and hostile ones ----------------------------------------


def test_hundred_clients_connected_at_once_are_all_answered(
    served: Served,
) -> None:
    socks = [raw_connect(served.path) for _ in range(100)]
    try:
        wait_until_sync(lambda: served.server.connections == 100,
                        message="100 connections accepted")
        for i, sock in enumerate(socks):
            sock.sendall(encode_request(i, "status"))
        for i, sock in enumerate(socks):
            answer = decode_answer(read_line(sock)[:-1])
            assert answer.ok and answer.id == i
            assert answer.data["jobs_in_flight"] == 1
    finally:
        for sock in socks:
            sock.close()


async def test_hundred_async_clients_at_once_are_all_answered(
    served: Served,
) -> None:
    client = AsyncControlClient(served.path, TIMEOUT)
    answers = await asyncio.gather(
        *(client.request("workers") for _ in range(100))
    )
    assert len(answers) == 100
    assert all(len(a) == 2 for a in answers)


def test_ten_megabyte_garbage_line_is_refused_and_serving_goes_on(
    served: Served,
) -> None:
    garbage = os.urandom(10 * 1024 * 1024).replace(b"\n", b"x")
    with raw_connect(served.path) as sock:
        try:
            sock.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: expected
        answer = decode_answer(read_line(sock)[:-1])
        assert not answer.ok
        assert "longer than 65536 bytes" in answer.error
        assert closed_by_server(sock)
    assert served.client().request("ping")["pong"]
    wait_until_sync(lambda: served.server.connections == 0,
                    message="every connection closed")


def test_malformed_json_gets_an_error_and_a_closed_connection(
    served: Served,
) -> None:
    for bad in (b"{status}\n", b'{"v": 7, "cmd": "ping"}\n', b"[]\n"):
        with raw_connect(served.path) as sock:
            sock.sendall(bad)
            answer = decode_answer(read_line(sock)[:-1])
            assert not answer.ok and answer.error
            assert closed_by_server(sock)
    assert served.client().request("ping")["pong"]


def test_idle_client_is_disconnected(sockdir: Path) -> None:
    harness = Served(sockdir / "s", idle_timeout=0.3).start()
    try:
        with raw_connect(harness.path) as idle:
            assert closed_by_server(idle)
        with raw_connect(harness.path) as slow:
            slow.sendall(b'{"v": 1, "cmd": "pi')
            answer = decode_answer(read_line(slow)[:-1])
            assert "not finished within 0.3s" in answer.error
            assert closed_by_server(slow)
        assert harness.client().request("ping")["pong"]
    finally:
        harness.stop()


def test_client_that_stops_reading_is_dropped_and_others_served(
    sockdir: Path,
) -> None:
    harness = Served(sockdir / "s", idle_timeout=0.5).start()
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(harness.path))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        request = encode_request(1, "status")
        sent = 0
        # Ask over and over without reading: the server must stop
        # buffering answers and, once they stall, drop the client.
        for _ in range(20000):
            try:
                sock.send(request)
                sent += 1
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError):
                break
        assert sent > 0
        wait_until_sync(lambda: harness.server.connections == 0,
                        message="the stalled client dropped")
        assert harness.client().request("ping")["pong"]
        sock.close()
    finally:
        harness.stop()


# -- the socket file -------------------------------------------------------


def test_socket_is_mode_0660_in_a_0750_directory(sockdir: Path) -> None:
    harness = Served(sockdir / "run" / "fuwad.sock").start()
    try:
        info = os.stat(harness.path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert stat.S_IMODE(os.stat(harness.path.parent).st_mode) == 0o750
    finally:
        harness.stop()
    assert not harness.path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chgrp needs root")
def test_socket_gets_the_configured_group(sockdir: Path) -> None:
    nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    harness = Served(sockdir / "fuwad.sock", group=nogroup.gr_name).start()
    try:
        assert os.stat(harness.path).st_gid == nogroup.gr_gid
    finally:
        harness.stop()


def test_unknown_group_is_refused_with_its_name(sockdir: Path) -> None:
    server = ControlServer(sockdir / "s", group="no-such-group-fuwad",
                           target=Target(), selector=selectors.DefaultSelector())
    with pytest.raises(ControlError, match="'no-such-group-fuwad' does not"):
        server.open()
    assert not (sockdir / "s").exists()


def test_stale_socket_is_replaced(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sockdir / "fuwad.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays behind, as after a crash
    with pytest.raises(DaemonNotRunning, match=f"{path}.*fuwad run"):
        ControlClient(path, TIMEOUT).request("ping")
    caplog.set_level(logging.WARNING, logger="fuwad.control")
    harness = Served(path).start()
    try:
        assert harness.client().request("ping")["pong"]
        assert any("stale" in r.getMessage() for r in caplog.records)
    finally:
        harness.stop()


def test_socket_held_only_by_a_dead_daemons_child_is_replaced(
    sockdir: Path,
) -> None:
    path = sockdir / "fuwad.sock"
    # A "daemon" listens, hands the socket to a child that outlives it (as
    # a worker might), and exits: connects succeed but nobody answers.
    script = (
        "import socket, subprocess, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        f"s.bind({str(path)!r}); s.listen(8)\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import sys; sys.stdin.read()'], pass_fds=[s.fileno()],"
        " stdin=subprocess.PIPE)\n"
        "print(child.pid, flush=True)\n"
    )
    daemon = subprocess.run([sys.executable, "-c", script], text=True,
                            capture_output=True, timeout=TIMEOUT, check=True)
    leftover = int(daemon.stdout.split()[0])
    try:
        harness = Served(path).start()
        try:
            assert harness.client().request("ping")["pid"] == os.getpid()
        finally:
            harness.stop()
    finally:
        os.kill(leftover, 9)


def test_second_server_on_a_live_socket_is_refused(served: Served) -> None:
    second = ControlServer(served.path, group="", target=Target(),
                           selector=selectors.DefaultSelector())
    with pytest.raises(DaemonAlreadyRunning,
                       match=f"pid {os.getpid()}.*{served.path}"):
        second.open()
    second.close()
    assert served.path.exists()
    assert served.client().request("ping")["pong"]


def test_regular_file_at_the_socket_path_is_left_alone(sockdir: Path) -> None:
    path = sockdir / "fuwad.sock"
    path.write_text("keep me")
    server = ControlServer(path, group="", target=Target(),
                           selector=selectors.DefaultSelector())
    with pytest.raises(ControlError, match="is not a socket"):
        server.open()
    assert path.read_text() == "keep me"


def test_close_leaves_a_newer_daemons_socket_alone(served: Served) -> None:
    served.path.unlink()
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(str(served.path))
    try:
        served.server.close()
        assert served.path.exists()
    finally:
        newer.close()


def test_forked_child_closing_its_copies_leaves_the_server_serving(
    served: Served,
) -> None:
    with raw_connect(served.path) as open_before_fork:
        wait_until_sync(lambda: served.server.connections == 1,
                        message="the connection accepted")
        pid = os.fork()
        if pid == 0:
            served.server.close_after_fork()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert served.path.exists()
        open_before_fork.sendall(encode_request(1, "ping"))
        assert decode_answer(read_line(open_before_fork)[:-1]).ok
    assert served.client().request("ping")["pong"]


# -- who may connect -------------------------------------------------------


needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="switching to nobody needs root")


@needs_root
def test_client_running_as_nobody_is_refused_and_logged(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(sockdir, 0o755)
    harness = Served(sockdir / "fuwad.sock").start()
    try:
        # Open the file to everyone, so only the peer check stands between
        # nobody and the daemon.
        os.chmod(harness.path, 0o666)
        caplog.set_level(logging.WARNING, logger="fuwad.control")
        result = ping_as(harness.path, nobody.pw_uid, nobody.pw_gid)
        assert result.startswith("ControlError: nobody may not use"), result
        assert "run fuwactl as root" in result
        assert any(f"refused uid={nobody.pw_uid}" in r.getMessage()
                   for r in caplog.records)
        assert harness.client().request("ping")["pong"]
    finally:
        harness.stop()


@needs_root
def test_socket_file_mode_keeps_nobody_out(sockdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(sockdir, 0o755)
    harness = Served(sockdir / "fuwad.sock").start()
    try:
        result = ping_as(harness.path, nobody.pw_uid, nobody.pw_gid)
        assert result.startswith("ControlError: permission denied"), result
    finally:
        harness.stop()


@needs_root
def test_member_of_the_configured_group_is_admitted(sockdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    os.chmod(sockdir, 0o755)
    harness = Served(sockdir / "fuwad.sock", group=group).start()
    try:
        result = ping_as(harness.path, nobody.pw_uid, nobody.pw_gid)
        assert result == "admitted"
    finally:
        harness.stop()


@needs_root
def test_a_process_granted_the_group_at_run_time_is_admitted(
    sockdir: Path,
) -> None:
    # As systemd's SupplementaryGroups= does: the group is the process's,
    # not the user's in /etc/group.
    nobody = pwd.getpwnam("nobody")
    granted = grp.getgrnam("sys")
    assert "nobody" not in granted.gr_mem
    os.chmod(sockdir, 0o755)
    harness = Served(sockdir / "fuwad.sock", group="sys").start()
    try:
        result = ping_as(harness.path, nobody.pw_uid,
                                   nobody.pw_gid, (granted.gr_gid,))
        assert result == "admitted"
    finally:
        harness.stop()


# -- the clients' own errors -------------------------------------------------


def test_client_without_a_socket_says_daemon_not_running(
    sockdir: Path,
) -> None:
    path = sockdir / "missing.sock"
    with pytest.raises(DaemonNotRunning) as caught:
        ControlClient(path, TIMEOUT).request("status")
    assert str(path) in str(caught.value)
    assert "fuwad run" in str(caught.value)
    with pytest.raises(DaemonNotRunning, match="fuwad run"):
        asyncio.run(AsyncControlClient(path, TIMEOUT).request("status"))


def test_client_times_out_on_a_daemon_that_never_answers(
    sockdir: Path,
) -> None:
    path = sockdir / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(path))
        mute.listen(4)
        with pytest.raises(ControlTimeout, match="did not answer 'status'"):
            ControlClient(path, 0.2).request("status")
        with pytest.raises(ControlTimeout, match="within 0.2s"):
            asyncio.run(AsyncControlClient(path, 0.2).request("status"))


def _answer_once_with(path: Path, reply: bytes) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                read_line(conn)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"garbage\n", "not valid JSON"),
        (b'{"v":1,"id":99,"ok":true,"data":1}\n', "answered request 99"),
        (b"", "closed the control connection"),
    ],
)
def test_client_reports_a_broken_answer(
    sockdir: Path, reply: bytes, message: str
) -> None:
    path = sockdir / "odd.sock"
    thread = _answer_once_with(path, reply)
    with pytest.raises(ProtocolError, match=message):
        ControlClient(path, TIMEOUT).request("ping")
    thread.join(TIMEOUT)
    path.unlink()
    thread = _answer_once_with(path, reply)
    with pytest.raises(ProtocolError, match=message):
        asyncio.run(AsyncControlClient(path, TIMEOUT).request("ping"))
    thread.join(TIMEOUT)


def test_socket_path_too_long_for_unix_is_refused_up_front(
    sockdir: Path,
) -> None:
    path = sockdir / ("d" * 60) / ("s" * 60)
    server = ControlServer(path, group="", target=Target(),
                           selector=selectors.DefaultSelector())
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        server.open()
    assert not path.parent.exists()
