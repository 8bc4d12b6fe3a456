"""Settings, domain types, errors and the command line."""

from core.errors import ConfigurationError, QuarryError
from core.settings import Settings, get_settings
from core.types import (
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
