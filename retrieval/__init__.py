"""Ingestion of document collections and hybrid retrieval over them."""

from retrieval.errors import (
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
from retrieval.library import Library
from retrieval.loaders import text_document
from retrieval.pipeline import SearchMode
from retrieval.reorder import reorder_for_reader

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
