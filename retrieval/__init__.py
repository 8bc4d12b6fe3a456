"""Ingestion of document collections and hybrid retrieval over them."""

from quarry.retrieval.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptDocumentError,
    DocumentError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    EmptyDocumentError,
    InvalidNameError,
    InvalidQueryError,
    RetrievalError,
    UndecodableTextError,
    UnsupportedTypeError,
)
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.retrieval.pipeline import SearchMode
from quarry.retrieval.reorder import reorder_for_reader

__all__ = [
    "CollectionExistsError",
    "CollectionNotFoundError",
    "CorruptDocumentError",
    "DocumentError",
    "DocumentNotFoundError",
    "DocumentTooLargeError",
    "EmptyDocumentError",
    "InvalidNameError",
    "InvalidQueryError",
    "Library",
    "RetrievalError",
    "SearchMode",
    "UndecodableTextError",
    "UnsupportedTypeError",
    "reorder_for_reader",
    "text_document",
]
