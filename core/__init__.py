"""Settings, domain types, errors and the command line."""

from quarry.core.errors import ConfigurationError, QuarryError
from quarry.core.settings import Settings, get_settings
from quarry.core.types import (
    Answer,
    Chunk,
    Citation,
    CollectionInfo,
    DocumentFailure,
    DocumentInfo,
    DocumentStatus,
    Evidence,
    Hit,
    IngestReport,
    NodeState,
    PlanNode,
    SourceDocument,
)

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "CollectionInfo",
    "ConfigurationError",
    "DocumentFailure",
    "DocumentInfo",
    "DocumentStatus",
    "Evidence",
    "Hit",
    "IngestReport",
    "NodeState",
    "PlanNode",
    "QuarryError",
    "Settings",
    "SourceDocument",
    "get_settings",
]
