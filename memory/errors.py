"""Errors of the memory package."""

from quarry.core.errors import QuarryError


class MemoryLayerError(QuarryError):
    """Base class of the long-context memory layer's errors."""


class MemoryConfigError(MemoryLayerError):
    """A memory setting is out of range, or the model cannot host the memory layer."""


class ContextStoreError(MemoryLayerError):
    """A context-store entry cannot be read or written."""


class ContextMismatchError(ContextStoreError):
    """A stored fixed context was made for another model, configuration or content."""
