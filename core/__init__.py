"""Settings, domain types, errors and the command line."""

from core.errors import ConfigurationError, QuarryError
from core.settings import Settings, get_settings
from core.types import (
    Chunk,
    CollectionInfo,
    DocumentFailure,
    DocumentInfo,
    DocumentStatus,
    Hit,
    IngestReport,
    SourceDocument,
)

__all__ = [
    "Chunk",
    "CollectionInfo",
    "ConfigurationError",
    "DocumentFailure",
    "DocumentInfo",
    "DocumentStatus",
    "Hit",
    "IngestReport",
    "QuarryError",
    "Settings",
    "SourceDocument",
    "get_settings",
]
