"""Configuration loading and the parsing of "when"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fuwad.config import load
from fuwad.errors import ConfigError, InvalidJob
from fuwad.states import JOB_MOVES, JobStatus, can_move
from fuwad.when import delay_seconds


def test_ini_then_environment_then_flags(tmp_path: Path) -> None:
    ini = tmp_path / "f.ini"
    ini.write_text("[queue]\nworker_sleep = 2\nconcurrency = 4\n"
                   "[http]\nport = 9000\n")
    config = load(ini, env={"FUWAD_QUEUE_CONCURRENCY": "8",
                            "FUWAD_DSN": "postgresql://x/y"},
                  overrides={"http.port": 9100, "queue.workers": None})
    assert config.queue.worker_sleep == 2.0
    assert config.queue.concurrency == 8
    assert config.database.dsn == "postgresql://x/y"
    assert config.http.port == 9100
    assert config.queue.workers == 2  # None flags change nothing


def test_every_key_in_etc_fuwad_ini_is_known_and_default() -> None:
    shipped = Path(__file__).resolve().parents[2] / "etc" / "fuwad.ini"
    assert load(shipped, env={}) == load("", env={}).__class__(
        source=str(shipped))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queue]\nworker_sleep = soon\n", "must be a number"),
        ("[queue]\nworker_sleep = nan\n", "finite number"),
        ("[queue]\nconcurrency = -1\n", "must not be negative"),
        ("[queue]\nconcurrency = 0\n", "at least 1"),
        ("[queue]\nmin_workers = 5\nmax_workers = 2\n", "must not exceed"),
        ("[queue]\ncolour = blue\n", "unknown key 'colour'"),
        ("[mystery]\nx = 1\n", "unknown section [mystery]"),
        ("[http]\nenabled = maybe\n", "true or false"),
        ("not ini at all", "not valid INI"),
    ],
)
def test_bad_config_says_what_is_wrong(tmp_path: Path, text: str,
                                       message: str) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(ini, env={})


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.ini", env={})


def test_relative_times_and_their_refusals() -> None:
    assert delay_seconds("+90 minutes") == 5400
    assert delay_seconds("+1 day") == 86400
    assert delay_seconds("45") == 45
    assert delay_seconds(timedelta(hours=1)) == 3600
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert delay_seconds(now + timedelta(seconds=30), now=now) == 30
    assert delay_seconds(now - timedelta(days=1), now=now) == 0
    for bad in ("tomorrow", "+3 fortnights", True, [1]):
        with pytest.raises(InvalidJob):
            delay_seconds(bad)  # type: ignore[arg-type]


def test_job_moves_match_the_design() -> None:
    assert can_move(JobStatus.PENDING, JobStatus.PROCESSING)
    assert can_move(JobStatus.FAILED, JobStatus.PENDING)
    assert not can_move(JobStatus.CANCELLED, JobStatus.PENDING)
    assert not can_move(JobStatus.COMPLETED, JobStatus.FAILED)
    assert set(JOB_MOVES) == set(JobStatus)
