"""Errors of the retrieval package."""

from quarry.core.errors import QuarryError


class RetrievalError(QuarryError):
    """Base class of retrieval errors."""


class DocumentError(RetrievalError):
    """One document could not be ingested; the others of its batch are unaffected."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class UnsupportedTypeError(DocumentError):
    pass


class EmptyDocumentError(DocumentError):
    pass


class CorruptDocumentError(DocumentError):
    pass


class DocumentTooLargeError(DocumentError):
    pass


class UndecodableTextError(DocumentError):
    pass


class CollectionNotFoundError(RetrievalError):
    pass


class CollectionExistsError(RetrievalError):
    pass


class DocumentNotFoundError(RetrievalError):
    pass


class InvalidNameError(RetrievalError):
    pass


class InvalidQueryError(RetrievalError):
    pass


class IndexCorruptError(RetrievalError):
    """An index file on disk cannot be read; it is rebuilt from the database."""
