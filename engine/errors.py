"""The engine's error types: what a user can act on, kept apart from bugs."""

from __future__ import annotations


class PanoLoopError(Exception):
    """A failure the user can act on; its message is one line that names the value.

    ``fix`` optionally says what to do about it (the add-on shows it under the error).
    """

    exit_code = 1

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class BadInput(PanoLoopError):
    """Refused input, raised before anything is loaded or written (CLI exit code 2)."""

    exit_code = 2


class JobCancelled(PanoLoopError):
    """The user cancelled the job; whatever it had started writing is already removed."""

    exit_code = 130
