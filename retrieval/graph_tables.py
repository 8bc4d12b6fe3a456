"""Rows of the passage graph: entities, the chunks that mention them, and the documents that
are their subject (revision 0002_passage_graph).

Only the schema lives here; the graph is filled and read elsewhere. Every row carries its
collection's id, so a collection's graph is read (and cascades away) without joins.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from quarry.retrieval.storage import _ID, Base


class EntityRow(Base):
    """Something passages talk about: a title, heading, name, quoted phrase or code term."""

    __tablename__ = "graph_entities"
    __table_args__ = (
        UniqueConstraint("collection_id", "key", name="uq_graph_entity_key"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(256))  # normalised (lowercase) form: what matches
    name: Mapped[str] = mapped_column(Text)  # display form
    kind: Mapped[str] = mapped_column(String(16))  # title, heading, name, quoted, code


class MentionRow(Base):
    """A chunk mentions an entity `count` times."""

    __tablename__ = "graph_mentions"
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        ForeignKey("graph_entities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class SubjectRow(Base):
    """A document is about an entity (its title, for instance)."""

    __tablename__ = "graph_subjects"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        ForeignKey("graph_entities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
