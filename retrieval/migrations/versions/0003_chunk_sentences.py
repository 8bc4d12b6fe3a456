"""Each chunk's answer-candidate sentences and their int8 embeddings, stored at ingest (rows
in quarry.retrieval.sentence_store). Chunks written before this revision have none and are
read as before, their sentences embedded at question time.

Revision ID: 0003_chunk_sentences
Revises: 0002_passage_graph
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_chunk_sentences"
down_revision: str | Sequence[str] | None = "0002_passage_graph"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # storage._ID


def upgrade() -> None:
    op.create_table(
        "chunk_sentences",
        sa.Column(
            "chunk_id", ID, sa.ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
        ),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("prose", sa.Boolean(), nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.Column("scales", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chunk_sentences")
