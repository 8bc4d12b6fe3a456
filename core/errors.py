"""The root of Quarry's exception types; each package derives its own."""


class QuarryError(Exception):
    """Base class of every error Quarry raises on purpose."""


class ConfigurationError(QuarryError):
    """A setting is invalid or an optional dependency it needs is missing."""
