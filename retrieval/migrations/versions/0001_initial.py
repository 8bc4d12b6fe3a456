"""The schema as it was before migrations: collections, documents, chunks, jobs, job
uploads and API keys.

A database made by earlier releases (tables created on connect, no alembic_version) is
adopted by quarry.retrieval.migrate: it runs this revision with
`config.attributes["adopt_existing"]` set, which keeps the tables already there and creates
only the missing ones (a database only ever used by the CLI has no jobs or api_keys yet).

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT, but INTEGER on SQLite, where only an INTEGER PRIMARY KEY can be AUTOINCREMENT
# (the `_ID` type of quarry.retrieval.storage; ids are never reused).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)


def _wanted(name: str) -> bool:
    """Whether to create a table: always, except one already there in an adopted database."""
    if not context.config.attributes.get("adopt_existing"):
        return True
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _wanted("collections"):
        op.create_table(
            "collections",
            sa.Column("id", ID, primary_key=True, autoincrement=True),
            sa.Column("tenant", sa.String(64), nullable=False),
            sa.Column("name", sa.String(64), nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("embedding_model", sa.String(512), nullable=False),
            sa.Column("dimension", sa.Integer(), nullable=False),
            sa.Column("created_at", TZ, nullable=False),
            sa.UniqueConstraint("tenant", "name", name="uq_collection_tenant_name"),
            sqlite_autoincrement=True,
        )
        op.create_index("ix_collections_tenant", "collections", ["tenant"])
    if _wanted("documents"):
        op.create_table(
            "documents",
            sa.Column("id", ID, primary_key=True, autoincrement=True),
            sa.Column("collection_id", ID, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
            sa.Column("source", sa.String(512), nullable=False),
            sa.Column("title", sa.Text(), nullable=False),
            sa.Column("content_hash", sa.String(64), nullable=False),
            sa.Column("media_type", sa.String(128), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("size_bytes", sa.BigInteger(), nullable=False),
            sa.Column("chunk_count", sa.Integer(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("metadata", sa.JSON(), nullable=False),
            sa.Column("created_at", TZ, nullable=False),
            sa.Column("updated_at", TZ, nullable=False),
            sa.UniqueConstraint("collection_id", "source", name="uq_document_source"),
            sqlite_autoincrement=True,
        )
        op.create_index("ix_documents_collection_id", "documents", ["collection_id"])
    if _wanted("chunks"):
        op.create_table(
            "chunks",
            sa.Column("id", ID, primary_key=True, autoincrement=True),
            sa.Column("document_id", ID, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
            sa.Column("collection_id", ID, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
            sa.Column("ordinal", sa.Integer(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("start_char", sa.Integer(), nullable=False),
            sa.Column("end_char", sa.Integer(), nullable=False),
            sa.Column("token_count", sa.Integer(), nullable=False),
            sa.Column("heading", sa.Text(), nullable=False),
            sa.Column("metadata", sa.JSON(), nullable=False),
            sa.Column("embedding", sa.LargeBinary(), nullable=False),
            sqlite_autoincrement=True,
        )
        op.create_index("ix_chunks_document_id", "chunks", ["document_id"])
        op.create_index("ix_chunks_collection_id", "chunks", ["collection_id"])
    if _wanted("jobs"):
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("tenant", sa.String(64), nullable=False),
            sa.Column("collection", sa.String(64), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("done", sa.Integer(), nullable=False),
            sa.Column("total", sa.Integer(), nullable=False),
            sa.Column("partial", sa.JSON(), nullable=False),
            sa.Column("result", sa.JSON(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("worker", sa.String(128), nullable=True),
            sa.Column("cancel_requested", sa.Boolean(), nullable=False),
            sa.Column("heartbeat_at", TZ, nullable=False),
            sa.Column("created_at", TZ, nullable=False),
            sa.Column("updated_at", TZ, nullable=False),
        )
        op.create_index("ix_jobs_kind", "jobs", ["kind"])
        op.create_index("ix_jobs_tenant", "jobs", ["tenant"])
        op.create_index("ix_jobs_status", "jobs", ["status"])
    if _wanted("job_uploads"):
        op.create_table(
            "job_uploads",
            sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("ordinal", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("source", sa.String(512), nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
        )
    if _wanted("api_keys"):
        op.create_table(
            "api_keys",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("tenant", sa.String(64), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("collections", sa.JSON(), nullable=False),
            sa.Column("rights", sa.String(8), nullable=False),
            sa.Column("revoked", sa.Boolean(), nullable=False),
            sa.Column("created_at", TZ, nullable=False),
        )
        op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("job_uploads")
    op.drop_table("jobs")
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_table("collections")
