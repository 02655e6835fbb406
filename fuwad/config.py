"""The configuration: one frozen dataclass built from INI, environment, flags.

Precedence, lowest first: the defaults below, the INI file (``--config``,
else ``FUWAD_CONFIG``, else none), environment variables
``FUWAD_<SECTION>_<KEY>`` (plus the short forms ``FUWAD_DSN`` and
``FUWAD_DATA_DIR``), then command-line flags.  ``etc/fuwad.ini`` lists every
key with its default; keep it in step with this module.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fuwad.errors import ConfigError


@dataclass(frozen=True, slots=True)
class QueueConfig:
    worker_sleep: float = 5.0
    worker_timeout: float = 300.0
    worker_max_attempts: int = 3
    retry_delay: float = 10.0
    retry_delay_max: float = 3600.0
    completed_job_ttl: int = 86400
    failed_job_ttl: int = 604800
    concurrency: int = 10
    workers: int = 2
    min_workers: int = 1
    max_workers: int = 4
    queues: str = ""
    imports: str = ""
    graceful_timeout: float = 30.0
    kill_grace: float = 5.0
    heartbeat_interval: float = 5.0
    worker_cleanup_heartbeat_timeout: float = 60.0
    worker_monitor_interval: float = 30.0
    scale_idle_seconds: float = 60.0
    max_jobs_per_worker: int = 0
    max_worker_memory_mb: int = 0
    autoscaling_worker_lifetime: float = 60.0
    autoscaling_worker_idle_timeout: float = 1800.0
    autoscaling_worker_heartbeat_interval: float = 10.0
    max_payload_bytes: int = 1048576

    def import_list(self) -> list[str]:
        """Return the handler modules each worker imports as it starts."""
        return [m.strip() for m in self.imports.split(",") if m.strip()]

    def queue_list(self) -> list[str] | None:
        """Return the queues to serve, or None for every queue."""
        names = [q.strip() for q in self.queues.split(",") if q.strip()]
        return names or None


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    dsn: str = ""
    data_dir: str = ""
    pool_size: int = 4


@dataclass(frozen=True, slots=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    max_body_bytes: int = 65536
    metrics_allow: str = "127.0.0.1,::1"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The HTTP API's rate limits, and an optional users table query.

    ``rate_*`` are requests per second a token of that role may make,
    ``burst_*`` how many it may make at once; a rate of 0 sets no limit.
    ``failed_*`` limit failed authentications per client address.
    """

    rate_viewer: float = 10.0
    burst_viewer: int = 120
    rate_operator: float = 10.0
    burst_operator: int = 120
    rate_admin: float = 20.0
    burst_admin: int = 240
    failed_rate: float = 0.2
    failed_burst: int = 20
    users_query: str = ""


@dataclass(frozen=True, slots=True)
class ControlConfig:
    socket: str = ""
    group: str = ""
    client_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Config:
    queue: QueueConfig = field(default_factory=QueueConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = ""

    def data_dir(self) -> Path:
        """Return the directory for the embedded database and the socket."""
        if self.database.data_dir:
            return Path(self.database.data_dir).expanduser()
        if os.geteuid() == 0:
            return Path("/var/lib/fuwad")
        base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
        return Path(base).expanduser() / "fuwad"

    def socket_path(self) -> Path:
        """Return the control socket's path."""
        if self.control.socket:
            return Path(self.control.socket).expanduser()
        runtime = os.environ.get("RUNTIME_DIRECTORY")  # set by systemd
        if runtime:
            return Path(runtime.split(":")[0]) / "fuwad.sock"
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.geteuid() != 0:
            return Path(xdg) / "fuwad" / "fuwad.sock"
        return self.data_dir() / "fuwad.sock"


SECTIONS: dict[str, type[Any]] = {
    "queue": QueueConfig,
    "database": DatabaseConfig,
    "http": HttpConfig,
    "auth": AuthConfig,
    "control": ControlConfig,
    "log": LogConfig,
}

SHORT_ENV = {
    "FUWAD_DSN": ("database", "dsn"),
    "FUWAD_DATA_DIR": ("database", "data_dir"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(section: str, key: str, kind: type[Any], raw: str) -> Any:
    where = f"[{section}] {key}"
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{where} must be true or false, not {raw!r}")
    if kind is int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"{where} must be a whole number, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{where} must not be negative, not {raw!r}")
        return value
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(
                f"{where} must be a number, not {raw!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ConfigError(
                f"{where} must be a finite number of at least 0, not {raw!r}"
            )
        return number
    return text


def _field_types(kind: type[Any]) -> dict[str, type[Any]]:
    names = {"float": float, "int": int, "bool": bool, "str": str}
    return {f.name: names[str(f.type)] for f in fields(kind)}


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration.

    ``overrides`` maps ``"section.key"`` to a value already of the right
    type, as command-line flags give them; None values are ignored.
    """
    environ = os.environ if env is None else env
    chosen = path or environ.get("FUWAD_CONFIG") or ""
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}

    # 1. The INI file.
    if chosen:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(chosen, encoding="utf-8") as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {chosen}: {exc.strerror}"
            ) from None
        except configparser.Error as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"config file {chosen} is not valid INI: {first}") from None
        for section in parser.sections():
            if section not in SECTIONS:
                known = ", ".join(SECTIONS)
                raise ConfigError(
                    f"{chosen}: unknown section [{section}]; known: {known}"
                )
            types = _field_types(SECTIONS[section])
            for key, raw in parser.items(section):
                if key not in types:
                    raise ConfigError(
                        f"{chosen}: unknown key {key!r} in [{section}]; "
                        "see etc/fuwad.ini for the known keys"
                    )
                values[section][key] = _convert(section, key, types[key], raw)

    # 2. The environment.
    for section, kind in SECTIONS.items():
        for key, typ in _field_types(kind).items():
            name = f"FUWAD_{section.upper()}_{key.upper()}"
            if name in environ:
                values[section][key] = _convert(section, key, typ, environ[name])
    for name, (section, key) in SHORT_ENV.items():
        if environ.get(name):
            values[section][key] = environ[name]

    # 3. Flags.
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        values[section][key] = value

    built = {name: SECTIONS[name](**values[name]) for name in SECTIONS}
    config = Config(**built, source=str(chosen))
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse settings that cannot work together."""
    q = config.queue
    if q.worker_max_attempts < 1 or q.worker_max_attempts > 1000:
        raise ConfigError("[queue] worker_max_attempts must be 1 to 1000")
    if q.concurrency < 1:
        raise ConfigError("[queue] concurrency must be at least 1")
    if q.worker_sleep <= 0:
        raise ConfigError("[queue] worker_sleep must be above 0 seconds")
    if q.worker_timeout <= 0:
        raise ConfigError("[queue] worker_timeout must be above 0 seconds")
    if q.min_workers > q.max_workers:
        raise ConfigError(
            "[queue] min_workers must not exceed max_workers "
            f"({q.min_workers} > {q.max_workers})"
        )
    if q.retry_delay_max < q.retry_delay:
        raise ConfigError("[queue] retry_delay_max must be >= retry_delay")
    level = config.log.level.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(
            f"[log] level must be DEBUG, INFO, WARNING or ERROR, not {level!r}"
        )
    if config.log.format not in {"text", "json"}:
        raise ConfigError("[log] format must be text or json")
    if not 0 < config.http.port < 65536:
        raise ConfigError("[http] port must be 1 to 65535")


def with_queue(config: Config, **changes: Any) -> Config:
    """Return ``config`` with some ``[queue]`` keys changed."""
    return replace(config, queue=replace(config.queue, **changes))


def as_dict(config: Config) -> dict[str, Any]:
    """Return the configuration as plain data, for status answers."""
    return dataclasses.asdict(config)
