"""The control commands' argument checks and the socket's access rule."""

from __future__ import annotations

import grp
import os
import pwd
from typing import Any

import pytest

from fuwad.control import commands
from fuwad.control.server import Peer, admitted
from fuwad.errors import ControlError
from tests.control_harness import Target


def test_each_command_calls_its_target_method() -> None:
    target = Target()
    assert commands.run(target, "scale", {"count": 3}) == {"workers": 3}
    assert commands.run(target, "monitor.stop", {}) == {"running": False}
    assert commands.run(target, "monitor.running", {}) == {"running": False}
    assert commands.run(target, "monitor.start", {}) == {"running": True}
    assert commands.run(target, "reload", {}) == {"reloading": True}
    assert commands.run(target, "shutdown", {"graceful_timeout": 2}) == {
        "stopping": True, "graceful_timeout": 2.0}
    assert commands.run(target, "shutdown", {})["graceful_timeout"] is None
    assert commands.run(target, "cancel", {"job_id": 42}) == {
        "job_id": 42, "stopping": True}
    assert commands.run(target, "cancel", {"job_id": 8})["stopping"] is False
    assert commands.run(target, "log-level", {"level": "debug"}) == {
        "level": "DEBUG"}
    assert target.calls == [
        ("scale", 3), ("monitor.stop", None), ("monitor.start", None),
        ("reload", None), ("shutdown", 2.0), ("shutdown", None),
        ("cancel", 42), ("cancel", 8), ("log-level", "DEBUG"),
    ]


def test_ping_answers_without_asking_the_target() -> None:
    target = Target()
    answer = commands.run(target, "ping", {})
    assert answer["pong"] is True and answer["pid"] == os.getpid()
    assert target.calls == []


@pytest.mark.parametrize(
    ("cmd", "args", "message"),
    [
        ("nope", {}, "unknown command 'nope'; known: ping, status"),
        ("status", {"verbose": True}, "unknown argument 'verbose'"),
        ("scale", {}, "scale needs count"),
        ("scale", {"count": "3"}, "count must be a whole number"),
        ("scale", {"count": True}, "count must be a whole number"),
        ("scale", {"count": 2.5}, "count must be a whole number"),
        ("scale", {"count": -1}, "count must be 0 to 10000, not -1"),
        ("scale", {"count": 10**6}, "count must be 0 to 10000"),
        ("cancel", {"job_id": 0}, "job_id must be 1 to"),
        ("cancel", {"job_id": 2**70}, "job_id must be 1 to"),
        ("shutdown", {"graceful_timeout": -1}, "at least 0"),
        ("shutdown", {"graceful_timeout": "5"}, "number of seconds"),
        ("shutdown", {"graceful_timeout": 1e400}, "finite"),
        ("log-level", {"level": "LOUD"}, "level must be one of DEBUG"),
        ("log-level", {}, "level must be one of"),
    ],
)
def test_wrong_arguments_are_refused_before_the_target_is_asked(
    cmd: str, args: dict[str, Any], message: str
) -> None:
    target = Target()
    with pytest.raises(ControlError, match=message):
        commands.run(target, cmd, args)
    assert target.calls == []


def _group(gid: int, members: list[str]) -> grp.struct_group:
    return grp.struct_group(("ops", "x", gid, members))


def _user(name: str, uid: int, gid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, gid, "", "/", "/bin/sh"))


def test_root_and_the_daemons_own_user_are_admitted_without_a_group() -> None:
    assert admitted(Peer(10, 0, 0), 1000, None, None)
    assert admitted(Peer(10, 1000, 1000), 1000, None, None)
    assert not admitted(Peer(10, 1001, 1001), 1000, None,
                        _user("eve", 1001, 1001))


def test_members_of_the_group_are_admitted_by_primary_or_supplementary() -> None:
    ops = _group(500, ["ann"])
    assert admitted(Peer(1, 1001, 1001), 1000, ops, _user("ann", 1001, 1001))
    assert admitted(Peer(1, 1002, 1002), 1000, ops, _user("bob", 1002, 500))
    assert admitted(Peer(1, 1003, 500), 1000, ops, None)  # effective group
    assert not admitted(Peer(1, 1004, 1004), 1000, ops,
                        _user("eve", 1004, 1004))
    assert not admitted(Peer(1, 1005, 1005), 1000, ops, None)
