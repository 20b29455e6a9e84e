"""Why a job given to the parsing workers produced no result.

`message` is written for the person who sent the document: it names no internals, so callers may
show it as it is.
"""

from __future__ import annotations


class ParsingError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobRejected(ParsingError):
    """The job refused its input (raised by job code inside the worker; the message crosses over)."""


class JobTimedOut(ParsingError):
    """The job ran past the time limit; its worker was killed and will be replaced."""


class WorkerCrashed(ParsingError):
    """The worker died during the job (a crash, the memory limit, a signal); it will be replaced."""


class JobFailed(ParsingError):
    """The job raised an unexpected exception (logged with its type; the worker is reused)."""


class PoolBusy(ParsingError):
    """Too many jobs are already waiting for a worker."""


class PoolClosed(ParsingError):
    """The pool is shutting down."""
