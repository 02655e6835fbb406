"""fuwactl's process commands against a real control server.

The server is the in-test harness of ``test_control_server`` (a real
ControlServer in a real selectors loop); fuwactl runs in-process through
its ``main``, and once as the installed console script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuwad.ctl import main
from tests.control_harness import Served

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3


@pytest.fixture(autouse=True)
def no_fuwad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FUWAD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ini(sockdir: Path) -> Path:
    path = sockdir / "fuwad.ini"
    path.write_text(f"[control]\nsocket = {sockdir / 'fuwad.sock'}\n"
                    "client_timeout = 10\n")
    return path


def ctl(ini: Path, *args: str) -> int:
    return main(["--config", str(ini), *args])


def test_status_without_a_daemon_exits_3_naming_the_socket(
    ini: Path, sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "status") == EXIT_NOT_RUNNING
    err = capsys.readouterr().err
    assert str(sockdir / "fuwad.sock") in err
    assert "start it with 'fuwad run'" in err
    assert err.count("\n") == 1


def test_installed_fuwactl_exits_3_without_a_daemon(ini: Path) -> None:
    fuwactl = Path(sys.executable).parent / "fuwactl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUWAD_")}
    done = subprocess.run([str(fuwactl), "--config", str(ini), "status"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == EXIT_NOT_RUNNING
    assert done.stderr.startswith("fuwactl: the fuwad daemon is not running")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_status_prints_the_daemon_and_its_workers(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "status") == 0
    out = capsys.readouterr().out
    record, _, workers = out.partition("\n\n")
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1)
                  for line in record.splitlines())
    assert fields["pid"] == str(os.getpid())
    assert fields["uptime"] == "3.5s"
    assert fields["monitor"] == "running"
    assert fields["config file"] == "(none)"
    assert fields["total completed"] == "5"
    assert fields["jobs in flight"] == "1"
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("INDEX"))
    assert lines[header].split()[:3] == ["INDEX", "PID", "STATE"]
    assert lines[header + 2].split()[:6] == [
        "1", "1001", "busy", "42", "app.Mail", "3"]
    assert lines[header + 2].endswith("1m 15s")


def test_status_json_is_the_daemons_answer(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "--json", "status") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == served.target.control_status()
    assert ctl(ini, "status", "--json") == 0  # also after the command
    assert json.loads(capsys.readouterr().out) == printed


def test_workers_table_and_json(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "workers") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("INDEX")
    assert ctl(ini, "--json", "workers") == 0
    printed = json.loads(capsys.readouterr().out)
    assert [w["pid"] for w in printed] == [1000, 1001]
    served.target.count = 0
    assert ctl(ini, "workers") == 0
    assert capsys.readouterr().out == "no workers\n"


def test_scale_sets_the_count_and_reports_the_daemons_refusal(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "--json", "scale", "4") == 0
    assert json.loads(capsys.readouterr().out) == {"workers": 4}
    assert served.target.count == 4
    assert ctl(ini, "scale", "9") == EXIT_FAILED
    err = capsys.readouterr().err
    assert err == "fuwactl: cannot scale to 9: [queue] max_workers is 8\n"
    assert served.target.count == 4


@pytest.mark.parametrize(
    "args",
    [("scale", "-1"), ("scale", "two"), ("scale",), ("scale", "10001"),
     ("monitor", "pause"), ("monitor",), ("shutdown", "--graceful-timeout",
                                           "-3"),
     ("shutdown", "--graceful-timeout", "nan"), ("log-level", "LOUD")],
)
def test_usage_errors_exit_2_before_asking_the_daemon(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
) -> None:
    assert ctl(ini, *args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert served.target.calls == []


def test_monitor_stop_running_start(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "monitor", "stop") == 0
    assert "monitor stopped" in capsys.readouterr().out
    assert ctl(ini, "monitor", "running") == 0
    assert capsys.readouterr().out == "stopped\n"
    assert ctl(ini, "--json", "monitor", "running") == 0
    assert json.loads(capsys.readouterr().out) == {"running": False}
    assert ctl(ini, "monitor", "start") == 0
    assert ctl(ini, "monitor", "running") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "running"
    assert [c[0] for c in served.target.calls] == [
        "monitor.stop", "monitor.start"]


def test_reload_shutdown_and_log_level_reach_the_daemon(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(ini, "reload") == 0
    assert ctl(ini, "shutdown", "--graceful-timeout", "2.5") == 0
    assert ctl(ini, "shutdown") == 0
    assert ctl(ini, "log-level", "debug") == 0
    out = capsys.readouterr().out
    assert "log level is now DEBUG" in out
    assert served.target.calls == [
        ("reload", None), ("shutdown", 2.5), ("shutdown", None),
        ("log-level", "DEBUG"),
    ]


def test_ping(served: Served, ini: Path,
              capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl(ini, "--json", "ping") == 0
    assert json.loads(capsys.readouterr().out)["pid"] == os.getpid()


def test_failing_daemon_command_exits_1_with_its_message(
    served: Served, ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served.target.broken = True
    assert ctl(ini, "status") == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("fuwactl: the daemon failed to run 'status'")


def test_bad_config_is_a_usage_error_with_its_message(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = sockdir / "bad.ini"
    bad.write_text("[control]\nclient_timeout = soon\n")
    assert main(["--config", str(bad), "status"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "[control] client_timeout must be a number" in err
