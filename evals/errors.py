"""Errors of the evals package."""

from quarry.core.errors import QuarryError


class EvalError(QuarryError):
    """Base class of evaluation errors."""


class DatasetError(EvalError):
    """A QA set or corpus file is missing or malformed; the message names the file and line."""


class RunDirError(EvalError):
    """A run directory cannot be used (another run holds it, or it belongs to another setup)."""
