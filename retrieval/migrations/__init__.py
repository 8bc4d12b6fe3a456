"""Alembic revisions of Quarry's one metadata database; run them with quarry.retrieval.migrate
(or `quarry db upgrade`). Revisions are hand-written and import no models."""
