"""advisor's own errors: each maps to a one-line message and a distinct exit code."""

from __future__ import annotations


class AdvisorError(Exception):
    """An error advisor reports as one line on stderr, exiting with :attr:`exit_code`."""

    exit_code = 1


class UsageError(AdvisorError):
    exit_code = 2


class ScriptNotFound(AdvisorError):
    exit_code = 3


class NotAPythonFile(AdvisorError):
    exit_code = 4


class ScriptSyntaxError(AdvisorError):
    exit_code = 5


class ScriptRaised(AdvisorError):
    exit_code = 6


class ScriptExited(AdvisorError):
    exit_code = 7


class ScriptTimedOut(AdvisorError):
    exit_code = 8


class NoTorchWork(AdvisorError):
    exit_code = 9


class RunDirError(AdvisorError):
    exit_code = 10


class AnalysisFailed(AdvisorError):
    exit_code = 11


class ApplyFailed(AdvisorError):
    """A technique named by ``--apply`` cannot act on the running script."""

    exit_code = 12


class ReportNotWritten(AdvisorError):
    """The report's file or one of its plots cannot be written."""

    exit_code = 13


class Interrupted(AdvisorError):
    exit_code = 130
