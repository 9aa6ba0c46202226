"""Exceptions the library raises on bad input; the CLI turns them into one red line."""

from __future__ import annotations


class FusionsegError(Exception):
    """Base class of every error fusionseg raises on purpose (exit status 2 in the CLI)."""

    exit_code = 2


class ConfigError(FusionsegError):
    """An invalid configuration: unknown key, wrong type, or bad value (message names the dotted path)."""


class DataError(FusionsegError):
    """Unreadable or inconsistent input data (message names the file and the problem)."""


class FramesFailed(DataError):
    """A batch job finished, but some of its frames failed (each is listed before the error line)."""

    exit_code = 3  # bad input or usage is 2, internal errors 1


class CheckpointError(FusionsegError):
    """A checkpoint that is missing, corrupt, untrusted, or does not fit the model asked for."""
