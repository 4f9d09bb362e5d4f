"""Errors a user can cause, and how they are reported.

A `UserError` carries one message that names the thing and says what to do. The API turns it into a 4xx
response, the UI shows the message; in both cases the server keeps serving.
"""

from __future__ import annotations

import logging
import sys
import traceback

log = logging.getLogger(__name__)


class UserError(Exception):
    """Something the user supplied (a file, a field, a name) cannot be used. HTTP status 400 by default."""

    status_code = 400


class NotFoundError(UserError):
    """A named thing (checkpoint, sampler, file) does not exist."""

    status_code = 404


class UnsafeFileError(UserError):
    """A model file was refused because loading it could run code or it is malformed."""


class OutOfMemoryError(UserError):
    """The device ran out of memory during a job (the job is abandoned, the server keeps serving)."""

    status_code = 507


def report(message: str, *, exc_info: bool = False) -> None:
    """Log an unexpected error with its traceback (A1111's errors.report)."""
    log.error(message, exc_info=exc_info)


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    """Print an exception raised while doing `task` (A1111's errors.display)."""
    log.error("Error %s: %s", task, e)
    if full_traceback:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
