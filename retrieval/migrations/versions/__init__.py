"""Alembic revision scripts, applied in down_revision order."""
