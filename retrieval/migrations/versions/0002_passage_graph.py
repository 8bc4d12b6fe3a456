"""The passage graph: entities per collection, the chunks that mention them, and the
documents that are their subject (rows in quarry.retrieval.graph_tables).

Revision ID: 0002_passage_graph
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_passage_graph"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # storage._ID


def _owner(table: str, column: str = "id") -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.{column}", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "graph_entities",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("collection_id", ID, _owner("collections"), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.UniqueConstraint("collection_id", "key", name="uq_graph_entity_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_graph_entities_collection_id", "graph_entities", ["collection_id"])
    op.create_table(
        "graph_mentions",
        sa.Column("chunk_id", ID, _owner("chunks"), primary_key=True, autoincrement=False),
        sa.Column("entity_id", ID, _owner("graph_entities"), primary_key=True, autoincrement=False),
        sa.Column("collection_id", ID, _owner("collections"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.create_index("ix_graph_mentions_entity_id", "graph_mentions", ["entity_id"])
    op.create_index("ix_graph_mentions_collection_id", "graph_mentions", ["collection_id"])
    op.create_table(
        "graph_subjects",
        sa.Column("document_id", ID, _owner("documents"), primary_key=True, autoincrement=False),
        sa.Column("entity_id", ID, _owner("graph_entities"), primary_key=True, autoincrement=False),
        sa.Column("collection_id", ID, _owner("collections"), nullable=False),
    )
    op.create_index("ix_graph_subjects_entity_id", "graph_subjects", ["entity_id"])
    op.create_index("ix_graph_subjects_collection_id", "graph_subjects", ["collection_id"])


def downgrade() -> None:
    op.drop_table("graph_subjects")
    op.drop_table("graph_mentions")
    op.drop_table("graph_entities")
