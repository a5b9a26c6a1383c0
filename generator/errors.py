"""The error the command line shows as a readable message (never a traceback) with an exit code."""

from __future__ import annotations

__all__ = ["CdpsimError"]


class CdpsimError(Exception):
    """A problem the user can act on: its message is printed as is, and the process exits `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
