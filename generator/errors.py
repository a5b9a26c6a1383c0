"""The error the command line shows as a readable message (never a traceback) with an exit code."""

from __future__ import annotations

__all__ = ["CdpsimError", "ProfileError"]


class CdpsimError(Exception):
    """A problem the user can act on: its message is printed as is, and the process exits `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class ProfileError(CdpsimError):
    """A profile that cannot be used; `problems` holds one readable line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems), code=2)
