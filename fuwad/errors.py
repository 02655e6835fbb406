"""Every error fuwad raises on purpose, rooted at :class:`FuwadError`.

Messages say what was wrong and what to do next; the CLI, the control socket
and the HTTP API show them to people as they are, so they never hold a
traceback, SQL text or a job's data.
"""


class FuwadError(Exception):
    """Base of every error fuwad raises on purpose."""


class ConfigError(FuwadError):
    """The configuration file, an environment variable or a flag is wrong."""


class DatabaseError(FuwadError):
    """PostgreSQL cannot be reached or refused what fuwad asked of it."""


class InvalidJob(FuwadError, ValueError):
    """A producer passed a job that cannot be stored as given."""


class JobNotFound(FuwadError, LookupError):
    """No job has the given id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"job {job_id} does not exist; list jobs with 'fuwactl list'"
        )
        self.job_id = job_id


class InvalidMove(FuwadError):
    """A job cannot make the asked move from the state it is in."""

    def __init__(self, job_id: int, status: str, action: str) -> None:
        super().__init__(f"job {job_id} is {status} and cannot be {action}")
        self.job_id = job_id
        self.status = status
        self.action = action


class HandlerError(FuwadError):
    """A job's ``job_class`` does not name a usable handler."""


class ProtocolError(FuwadError):
    """A control-socket message broke the protocol."""


class DaemonNotRunning(FuwadError):
    """Nothing answers on the control socket."""


class ControlError(FuwadError):
    """The daemon refused or failed a control command; the message says why."""


class ControlTimeout(ControlError, TimeoutError):
    """The daemon did not answer a control command in time."""


class DaemonAlreadyRunning(ControlError):
    """Another live daemon already listens on the control socket."""
