"""Errors raised for bad input, each naming the problem and the fix.

Every check in inrecon that rejects user input raises :class:`InreconError` (a ``ValueError``), whose message
has the form ``"<problem>. Fix: <what to do>"``. The command line prints that one line and exits with status 2.
"""

from __future__ import annotations


class InreconError(ValueError):
    """Bad input or configuration, detected before any long computation.

    Parameters
    ----------
    problem
        What is wrong, naming the offending key, file or value.
    fix
        What the user should do about it.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem.rstrip(".")
        self.fix = fix
        super().__init__(f"{self.problem}. Fix: {fix}" if fix else self.problem)


class FileFormatError(InreconError):
    """A file that cannot be read, is truncated, or does not follow the documented layout."""


class ShapeError(InreconError):
    """An array with the wrong shape or number of dimensions."""
